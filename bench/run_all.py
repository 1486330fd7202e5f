"""Run every benchmark (make bench)."""

from bench import scale_bench, select_bench, standardize_bench, ui_vs_cli

if __name__ == "__main__":
    standardize_bench.main([])
    select_bench.main([])
    scale_bench.main([])
    ui_vs_cli.main([])
