"""Run a dataset's reader: good samples go to raw_samples, bad input to the quarantine table."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pyarrow as pa

from pipelines import PIPELINE_VERSION
from pipelines.config import PipelineConfig
from pipelines.records import QUARANTINE, RAW_SAMPLES, to_table
from pipelines.source import Source
from pipelines.sourcefiles import FileProblem, tree_problems
from pipelines.sources import READERS
from pipelines.sources.base import (
    Quarantined,
    ReadContext,
    Reader,
    Reason,
    SampleError,
    SampleRecord,
)


@dataclass
class IngestResult:
    samples: pa.Table
    quarantine: pa.Table
    notes: list[str] = field(default_factory=list)  # what the user should know that is no quarantine (pixel-size table)

    @property
    def reason_counts(self) -> dict[str, int]:
        return dict(Counter(self.quarantine.column("reason_code").to_pylist()))

    @property
    def rejected(self) -> int:
        """Quarantine rows that stand for lost input (files left out by an `exclude` pattern are not)."""
        return sum(n for k, n in self.reason_counts.items() if k != Reason.EXCLUDED_FILE.value)

    @property
    def spacing_counts(self) -> dict[str, int]:
        """Samples per pixel-size origin (header | registry | table | unknown)."""
        return dict(Counter(self.samples.column("spacing_source").to_pylist()))


def reader_for(source: Source, config: PipelineConfig) -> Reader:
    return READERS[source.entry.format](ReadContext(source=source, config=config))


def quarantine_row(dataset_id: str, stage: str, q: Quarantined, seed: int, sample_id: str | None = None) -> dict:
    return {"stage": stage, "reason_code": q.reason.value, "reason": q.message, "sample_id": sample_id,
            "dataset_id": dataset_id, "source_path": q.source_path, "pipeline_version": PIPELINE_VERSION,
            "seed": seed}


def ingest(source: Source, config: PipelineConfig, problems: list[FileProblem] | None = None) -> IngestResult:
    """Scan one dataset. Rows are sorted by sample id so the output is byte-stable.

    ``problems`` are the paths change detection could not use (a loop, a dangling link, a FIFO, an
    unreadable file); without them the root is walked here (stat only). Each one the reader did not
    already report becomes its own quarantine row, so no such file is skipped silently."""
    reader = reader_for(source, config)
    rows: dict[str, dict] = {}
    bad: list[dict] = []
    sizes = source.pixel_sizes()
    for item in _scan(reader):
        if isinstance(item, Quarantined):
            bad.append(quarantine_row(source.id, "ingest", item, config.seed))
            continue
        assert isinstance(item, SampleRecord)
        if source.entry.dimension == 2 and not item.spacing:
            item.spacing, item.spacing_source = sizes.lookup(item.source_path, item.name)
        row = reader.ctx.sample_row(item)
        if row["sample_id"] in rows:
            bad.append(quarantine_row(source.id, "ingest", Quarantined(
                item.source_path, Reason.DUPLICATE_SAMPLE,
                f"'{item.source_path}' is listed more than once; the first entry was kept"), config.seed,
                row["sample_id"]))
            continue
        rows[row["sample_id"]] = row
    reported = {r["source_path"] for r in bad}
    found = problems if problems is not None else tree_problems(source.root, config.ingest.limits)
    for p in found:
        if p.rel not in reported:
            reported.add(p.rel)
            bad.append(quarantine_row(source.id, "ingest", Quarantined(p.rel, p.reason, p.message), config.seed))
    if not rows:
        hint = reader.empty_hint()
        bad.append(quarantine_row(source.id, "ingest", Quarantined(
            str(source.root), Reason.NO_SAMPLES,
            f"dataset '{source.id}' yielded no usable sample; check 'root', 'format' and 'options'"
            + (f" ({hint})" if hint else "")), config.seed))
    samples = to_table([rows[k] for k in sorted(rows)], RAW_SAMPLES)
    bad.sort(key=lambda r: (r["source_path"], r["reason_code"], r["reason"]))
    return IngestResult(samples=samples, quarantine=to_table(bad, QUARANTINE), notes=sizes.notes())


def _scan(reader: Reader):
    """The reader's records; a problem that stops the whole scan (the image folder missing, or a symlink out of
    the dataset) ends it with one quarantine row naming the fix instead of a traceback."""
    try:
        yield from reader.scan()
    except SampleError as exc:
        yield Quarantined(exc.path or str(reader.ctx.root), exc.reason, str(exc))
