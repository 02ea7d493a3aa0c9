"""Benchmarks: ours and the reference side by side, ratios printed (see the README)."""
