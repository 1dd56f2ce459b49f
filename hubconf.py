"""torch.hub entry points.

```python
model = torch.hub.load("<owner>/videoanyup", "videoanyup", pretrained=True)
model = torch.hub.load("<owner>/videoanyup", "videoanyup", pretrained=False, config="large")
```
`pretrained=True` loads bundled weights by name (strictly); `pretrained=False` returns an untrained
network of the named configuration.
"""

dependencies = ["torch", "torchvision", "einops", "safetensors"]


def videoanyup(*, pretrained: bool = True, config: str = "default"):
    """VideoAnyUp, the feature upsampler: bundled weights `config` (pretrained) or a fresh network."""
    from videoanyup.models.videoanyup import VideoAnyUp

    model = VideoAnyUp.from_pretrained(config) if pretrained else VideoAnyUp.from_config(config)
    return model.eval()


def basicavsr(*, pretrained: bool = True, config: str = "lite"):
    """BasicAVSR, the pixel super-resolution network: bundled weights `config` or a fresh network."""
    from videoanyup.models.basicavsr import BasicAVSR

    model = BasicAVSR.from_pretrained(config) if pretrained else BasicAVSR.from_config(config)
    return model.eval()
