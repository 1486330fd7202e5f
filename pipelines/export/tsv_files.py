"""Every VLMEvalKit TSV of one export, written and hashed in one call: the export runs it in a worker beside the
Parquet writer (`pipelines.processes.run_beside`), so this module imports only what writing TSVs needs (a worker
starts with its module's imports; the export's card and charts would add 115 MB to it)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipelines.export.circular import write_with_circular
from pipelines.export.tsv import write_tsv


def write_tsvs(tables: list[tuple[pd.DataFrame, Path, str]], data_root: Path, stage: Path, main: tuple[Path, str]
               ) -> dict[str, dict]:
    """Each (items, folder, name) TSV, and the circular TSVs of ``main`` (its tsv folder and name) in the same pass
    as its single-answer TSVs; returns the sha256 and size of every TSV written (taken as it was written), by its
    path under ``stage``."""
    facts: dict[Path, dict] = {}
    for items, folder, name in tables:
        if (folder / "tsv", name) == tuple(main):
            written, circular = write_with_circular(items, data_root, folder, name)
            facts.update(circular)
        else:
            written = write_tsv(items, data_root, folder, name)
        facts.update({path: w.facts for path, w in written.items()})
    return {p.relative_to(stage).as_posix(): f for p, f in sorted(facts.items())}
