"""The project's benchmarks and CPU reproduction: scripts, plus `benchmarks.reporting` (the results table)."""
