"""medbench domain library: pure functions over arrays and tables (no Dagster import)."""

__version__ = "0.1.0"
PIPELINE_VERSION = __version__
