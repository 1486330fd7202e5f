"""Remove everything a dataset wrote under the data root (used when it leaves the registry)."""

from __future__ import annotations

import shutil
from pathlib import Path

from pipelines.run_state import state_files
from pipelines.storage import DataLayout


def dataset_outputs(root: Path, dataset_id: str) -> list[Path]:
    """Per-dataset tables (any stage, quarantine included), slice and rendered-item folders, the review sheet, the
    data root's record of what was built."""
    layout = DataLayout(root)
    tables = layout.root / "tables"
    found = sorted(tables.rglob(f"{dataset_id}.parquet")) if tables.is_dir() else []
    found += [p for p in (layout.images(dataset_id), layout.rendered() / dataset_id,
                          layout.review_sheet(dataset_id)) if p.exists()]
    return found + state_files(root, dataset_id)


def remove_dataset_outputs(root: Path, dataset_id: str) -> list[Path]:
    """Delete them; return what was removed so callers can log it."""
    removed = dataset_outputs(root, dataset_id)
    for p in removed:
        shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    return removed
