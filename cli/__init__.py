"""The `medbench` command line: a front-end over the pipelines and the Dagster definitions."""
