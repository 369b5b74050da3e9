"""Measurement: benchmarks now; task packs, the eval runner and ablations later."""
