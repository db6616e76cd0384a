"""Benchmarks for gplr-spark: synthetic purchase graphs and the affinity benchmark."""
