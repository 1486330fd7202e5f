"""Materialize the asset graph without the UI (used by `medbench build` and `make demo`)."""

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from assets.changes import globals_up_to_date, sync_registry
from assets.definitions import ALL_ASSETS, GLOBAL, GLOBAL_KEYS, PER_DATASET, PER_DATASET_KEYS, defs
from assets.parallel import QUIET, materialize_partitions
from pipelines.config import PROJECT_ROOT, PipelineConfig
from pipelines.registry import load_registry


def ensure_dagster_home() -> Path:
    """Use $DAGSTER_HOME, or the project's .dagster/ with the project's dagster.yaml (SQLite)."""
    home = Path(os.environ.get("DAGSTER_HOME") or PROJECT_ROOT / ".dagster").resolve()
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if not target.exists():
        shutil.copyfile(PROJECT_ROOT / "dagster.yaml", target)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def export_config_env(config: PipelineConfig, config_file: str | None) -> None:
    """Runs read their settings through MedbenchResource, which falls back to these variables."""
    os.environ["MEDBENCH_REGISTRY"] = str(config.registry)
    os.environ["MEDBENCH_DATA_ROOT"] = str(config.data_root)
    os.environ["MEDBENCH_SEED"] = str(config.seed)
    if config_file:
        os.environ["MEDBENCH_CONFIG"] = str(config_file)


@dataclass
class BuildReport:
    succeeded: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def _keys(assets: list[dg.AssetsDefinition], select: list[str] | None) -> list[dg.AssetKey]:
    keys = [k for a in assets for k in a.keys]
    return [k for k in keys if not select or k.to_user_string() in select]



def build(config: PipelineConfig, select: list[str] | None = None, datasets: list[str] | None = None,
          log=print, force: bool = False, workers: int | None = None) -> BuildReport:
    """Changed per-dataset partitions (in parallel), then the cross-dataset assets if anything changed.

    Up-to-date datasets are skipped (same content, settings and code as materialized); `force` or an
    explicit `select` re-runs. Datasets gone from the registry lose their partition and outputs.
    """
    ensure_dagster_home()
    instance = dg.DagsterInstance.get()
    registry = load_registry(config.registry)
    for ds in datasets or []:
        registry.get(ds)
    plan = sync_registry(instance, registry, config, PER_DATASET_KEYS, datasets, force or bool(select), log)
    report = BuildReport()
    per_keys = _keys(PER_DATASET, select)
    results = materialize_partitions(plan.stale, per_keys, workers, log) if per_keys else {}
    for ds, ok in results.items():
        (report.succeeded if ok else report.failed).append(ds)
    global_keys = _keys(GLOBAL, select)
    stale_globals = force or bool(select) or plan.changed_anything or \
        not globals_up_to_date(instance, GLOBAL_KEYS, PER_DATASET_KEYS)
    if global_keys and not report.failed and stale_globals:
        log(f"materializing {', '.join(k.to_user_string() for k in global_keys)}")
        res = dg.materialize(ALL_ASSETS, selection=global_keys, instance=instance, resources=defs.resources,
                             raise_on_error=False, run_config=QUIET)
        (report.succeeded if res.success else report.failed).append("global")
    elif global_keys and not report.failed:
        log("cross-dataset assets are up to date (--force re-runs them)")
    return report
