"""raw_samples: one partition per registered dataset; bad input goes to a quarantine table."""


import dagster as dg

from assets.changes import dataset_run_versions
from assets.metadata import table_metadata
from assets.partitions import datasets_partitions
from assets.resources import MedbenchResource
from assets.workers import WORKER_MODULES
from pipelines.ingest import ingest
from pipelines.processes import expect_worker_modules
from pipelines.run_state import record_ingested
from pipelines.storage import atomic_write_table


def markdown_counts(counts: dict[str, int], header: str = "reason") -> str:
    if not counts:
        return "none"
    lines = [f"| {header} | count |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in sorted(counts.items())]
    return "\n".join(lines)


@dg.asset(
    partitions_def=datasets_partitions,
    group_name="ingest",
    check_specs=[dg.AssetCheckSpec("ingest_quarantine", asset="raw_samples",
                                   description="bad input files quarantined while reading the dataset")],
    description="One row per sample of a source dataset, with what its reader found.",
)
def raw_samples(context: dg.AssetExecutionContext, medbench: MedbenchResource) -> dg.MaterializeResult:
    dataset_id = context.partition_key
    expect_worker_modules(*WORKER_MODULES["raw_samples"])  # this partition's workers
    source = medbench.sources.get(dataset_id)
    problems: dict = {}
    version = dataset_run_versions(medbench.sources, medbench.config, [dataset_id], problems)[dataset_id]  # before reading
    result = ingest(source, medbench.config, problems.get(dataset_id))
    layout = medbench.layout
    path = atomic_write_table(result.samples, layout.table("raw_samples", dataset_id))
    qpath = atomic_write_table(result.quarantine, layout.quarantine("ingest", dataset_id))
    record_ingested(layout.root, dataset_id, version)
    n_bad = result.rejected  # files an exclude pattern leaves out are counted in by_reason, not failed on
    return dg.MaterializeResult(
        data_version=dg.DataVersion(version),
        metadata={
            **table_metadata(result.samples),
            "samples": result.samples.num_rows,
            "quarantined": n_bad,
            "excluded_files": result.quarantine.num_rows - n_bad,
            "pixel_size_origin": dg.MetadataValue.md(markdown_counts(result.spacing_counts, "origin")),
            **({"pixel_size_notes": dg.MetadataValue.md("\n".join(f"- {n}" for n in result.notes))}
               if result.notes else {}),
            "path": dg.MetadataValue.path(str(path)),
            "quarantine_path": dg.MetadataValue.path(str(qpath)),
        },
        check_results=[dg.AssetCheckResult(
            check_name="ingest_quarantine",
            passed=n_bad == 0 and result.samples.num_rows > 0,
            severity=dg.AssetCheckSeverity.ERROR if result.samples.num_rows == 0 else dg.AssetCheckSeverity.WARN,
            metadata={"quarantined": n_bad, "by_reason": dg.MetadataValue.md(markdown_counts(result.reason_counts)),
                      "quarantine_path": dg.MetadataValue.path(str(qpath))},
        )],
    )
