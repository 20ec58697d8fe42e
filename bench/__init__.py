"""flopcast's measuring half: the `pytest --benchmark` plugin, device timers, telemetry,
device identity, the benchmark cases and the writing of result records."""
