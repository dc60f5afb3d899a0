"""Benchmarks of the control plane: each starts what it needs, measures, cleans up, prints a table, writes JSON."""
