"""Reproducible measurements; each command writes JSON and Markdown under benchmarks/results/."""
