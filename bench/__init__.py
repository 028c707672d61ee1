"""Benchmark tools; a package so that ``python -m bench.loadgen`` runs from the repository root."""
