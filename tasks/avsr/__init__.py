"""BasicAVSR training, evaluation and inference: system, data, degradation, chunked upscaling, command lines."""
