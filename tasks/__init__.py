"""Lightning systems, data, probes, metrics and the command line (installed as `videoanyup.tasks`)."""
