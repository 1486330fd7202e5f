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


# -- what the data root itself says is built ---------------------------------------------------------
# Skip decisions read these files, never the Dagster instance: one Dagster home may serve several data
# roots (or be swapped), and an empty data root must never count as up to date.

PER_DATASET_TABLES = ("raw_samples", "slices", "regions")
GLOBAL_OUTPUTS = ("tables/benchmark.parquet", "tables/rendered_items.parquet", "benchmark/manifest.json")


def _version_path(data_root: Path, dataset_id: str) -> Path:
    return Path(data_root) / "state" / "datasets" / f"{dataset_id}.json"


def _read_json(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def record_ingested(data_root: Path, dataset_id: str, version: str) -> None:
    """raw_samples of this run version are written; what was described before is now out of step."""
    atomic_write_bytes(_version_path(data_root, dataset_id), json.dumps({"raw_samples": version}).encode())


def record_described(data_root: Path, dataset_id: str) -> None:
    """slices and regions now describe the raw_samples of the recorded version."""
    path = _version_path(data_root, dataset_id)
    doc = _read_json(path)
    if doc.get("raw_samples"):
        atomic_write_bytes(path, json.dumps({**doc, "described": doc["raw_samples"]}, sort_keys=True).encode())


def built_version(data_root: Path, dataset_id: str) -> str | None:
    """The run version every per-dataset output of the dataset was built from, or None when any is missing
    or out of step (never ingested here, ingested but not described, a table deleted)."""
    doc = _read_json(_version_path(data_root, dataset_id))
    version = doc.get("raw_samples")
    if not version or doc.get("described") != version:
        return None
    root = Path(data_root) / "tables"
    if not all((root / name / f"{dataset_id}.parquet").is_file() for name in PER_DATASET_TABLES):
        return None
    return version


def state_files(data_root: Path, dataset_id: str) -> list[Path]:
    p = _version_path(data_root, dataset_id)
    return [p] if p.exists() else []


def _globals_path(data_root: Path) -> Path:
    return Path(data_root) / "state" / "globals.json"


def record_globals(data_root: Path, versions: dict[str, str]) -> None:
    """The cross-dataset outputs were built from exactly these datasets at these run versions."""
    atomic_write_bytes(_globals_path(data_root), json.dumps({"datasets": versions}, indent=1, sort_keys=True).encode())


def globals_current(data_root: Path, versions: dict[str, str]) -> bool:
    """The cross-dataset outputs exist and were built from these datasets at these versions."""
    if not all((Path(data_root) / rel).is_file() for rel in GLOBAL_OUTPUTS) or stale_datasets(data_root):
        return False
    return _read_json(_globals_path(data_root)).get("datasets") == versions


def forget_globals(data_root: Path) -> None:
    _globals_path(data_root).unlink(missing_ok=True)


# -- LLM calls of the last cross-dataset run: failures are counted, never silent -------------------------

def _llm_path(data_root: Path) -> Path:
    return Path(data_root) / "state" / "llm_calls.json"


def record_llm_calls(data_root: Path, step: str, requests: int, failed: int, errors: list[str]) -> None:
    """How many LLM requests ``step`` asked for and how many failed (with the first errors, redacted)."""
    doc = _read_json(_llm_path(data_root))
    doc[step] = {"requests": requests, "failed": failed, "errors": errors[:5]}
    atomic_write_bytes(_llm_path(data_root), json.dumps(doc, indent=1, sort_keys=True).encode())


def llm_calls(data_root: Path) -> dict[str, dict]:
    """step -> {requests, failed, errors} as recorded by the last run of each step."""
    return {k: v for k, v in _read_json(_llm_path(data_root)).items() if isinstance(v, dict)}


def forget_llm_calls(data_root: Path, steps: list[str]) -> None:
    """Drop the records of the steps about to run again (a step that fails before recording leaves none)."""
    doc = _read_json(_llm_path(data_root))
    if any(k in doc for k in steps):
        atomic_write_bytes(_llm_path(data_root), json.dumps({k: v for k, v in doc.items() if k not in steps},
                                                            indent=1, sort_keys=True).encode())


# -- datasets the last rendering could not bring up to date (their items: last good image, or left out) -----

def _stale_path(data_root: Path) -> Path:
    return Path(data_root) / "state" / "stale_datasets.json"


def record_stale(data_root: Path, stale: dict[str, dict]) -> None:
    atomic_write_bytes(_stale_path(data_root), json.dumps(stale, indent=1, sort_keys=True).encode())


def stale_datasets(data_root: Path) -> dict[str, dict]:
    """dataset -> {reason, samples, reused, left_out} from the last rendering."""
    return {k: v for k, v in _read_json(_stale_path(data_root)).items() if isinstance(v, dict)}
