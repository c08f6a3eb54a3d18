"""Benchmarks (`pipeline bench <name>`). Each module measures its paths side by side in one
run on this machine and exposes ``run(**options) -> dict`` returning ratios and raw numbers."""
