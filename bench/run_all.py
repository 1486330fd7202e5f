"""Run every benchmark (make bench)."""

from bench import standardize_bench

if __name__ == "__main__":
    standardize_bench.main([])
