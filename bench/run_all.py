"""Run every benchmark (make bench)."""

from bench import standardize_bench, ui_vs_cli

if __name__ == "__main__":
    standardize_bench.main([])
    ui_vs_cli.main([])
