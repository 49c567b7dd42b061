"""The benchmark scripts under perf/: their smoke runs work (speed is not asserted here)."""
