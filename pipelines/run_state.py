"""Which datasets failed their last build, so the cross-dataset stages leave their stale tables out.

A dataset whose per-dataset stages failed may still have tables from an earlier run; mixing those
into the vocabulary and the benchmark would publish outdated items. `medbench build` records each
failure here (with its reason) and clears it when the dataset builds again.
"""

from __future__ import annotations

import json
from pathlib import Path

from pipelines.storage import atomic_write_bytes


def _path(data_root: Path) -> Path:
    return Path(data_root) / "state" / "failed_datasets.json"


def failed_datasets(data_root: Path) -> dict[str, str]:
    """dataset id -> why its last build failed."""
    path = _path(data_root)
    if not path.exists():
        return {}
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError):
        return {}


def record_outcomes(data_root: Path, failed: dict[str, str], succeeded: list[str]) -> dict[str, str]:
    """Add this run's failures, drop the datasets that built; returns the new state."""
    state = {k: v for k, v in failed_datasets(data_root).items() if k not in succeeded}
    state.update(failed)
    atomic_write_bytes(_path(data_root), json.dumps(state, indent=1, sort_keys=True).encode())
    return state


def usable(dataset_ids: list[str], data_root: Path) -> list[str]:
    """The registered datasets the cross-dataset stages may read (those not failed last time)."""
    bad = failed_datasets(data_root)
    return [ds for ds in dataset_ids if ds not in bad]
