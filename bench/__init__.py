"""flopcast's measuring half: the `python -m pytest --benchmark` plugin, device timers,
telemetry, device identity, the benchmark cases and the writing of result records."""
