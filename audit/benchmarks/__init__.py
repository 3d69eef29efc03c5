"""Benchmarks: each writes a JSON of measurements, ratios and pass/fail per target (`make bench*`)."""
