"""Exports of the benchmark: Hugging Face Parquet, VLMEvalKit TSV, lexical tree, summary charts."""
