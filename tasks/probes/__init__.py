"""Linear probes and consistency measures on upsampled features (DESIGN.md §5.7); `videoanyup probe`.

| file                     | what                                                                       |
|--------------------------|----------------------------------------------------------------------------|
| `davis.py`               | DAVIS-layout sequences (2016 binary masks, 2017 palette ids)               |
| `vos_metrics.py`         | J (region IoU) and F (boundary F-measure), DAVIS-style                     |
| `linear_probe.py`        | pixel sampling and the 1×1-conv probe                                      |
| `label_propagation.py`   | VOS by propagating the first mask through feature affinities               |
| `temporal_consistency.py`| DIS-flow warping error with a forward–backward occlusion check             |
| `fidelity.py`            | cosine to the backbone on 2× upscaled frames                               |
| `upsamplers.py`          | bilinear / perframe / videoanyup by name                                   |
| `vos.py`, `depth.py`     | the two probes end to end                                                  |
| `figures.py`             | PCA colourings (PNG grid, mp4)                                             |
| `cli.py`                 | the `videoanyup probe` options                                             |
"""
