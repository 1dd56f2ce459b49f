"""Feature extractors with one contract (installed as `videoanyup.backbones`)."""
