"""Scoring models on an exported benchmark: predictions in, a reproducible report out (no dagster here)."""
