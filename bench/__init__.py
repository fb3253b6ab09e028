"""Benchmarks: each script runs the obvious alternative and ours side by side, interleaved, and reports
medians and ratios (see bench/RESULTS.md). Nothing runs on import; run `python -m bench.run_all`."""
