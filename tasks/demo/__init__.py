"""`videoanyup demo`: what the library does, on a real clip, in two minutes on a laptop CPU.

- `feature_demo`: backbone features of a clip upsampled by bilinear and by VideoAnyUp (per frame and
  bidirectional): fidelity, temporal error and speed in a table, a PCA picture and a PCA video;
- `backbone_choice`: the demo's backbone, pretrained when its weights are already in the local hub cache,
  else random (never a download);
- the pixel comparison (`videoanyup demo --pixels`, BasicAVSR against bicubic) is `videoanyup.tasks.avsr.demo`.
"""
