"""Per-dataset stages are partitioned by source dataset id (one dynamic partition per entry)."""

import dagster as dg

datasets_partitions = dg.DynamicPartitionsDefinition(name="datasets")
