"""Benchmark: balanced diverse selection, disjoint splits, validity audit."""
