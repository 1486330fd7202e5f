"""Materialize the asset graph without the UI (used by `medbench build` and `make demo`)."""

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from assets.definitions import ALL_ASSETS, GLOBAL, PER_DATASET, PUBLISH, defs
from assets.partitions import datasets_partitions
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


QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def build(config: PipelineConfig, select: list[str] | None = None, datasets: list[str] | None = None,
          log=print) -> BuildReport:
    """Per-dataset assets once per dataset partition, then the cross-dataset assets."""
    ensure_dagster_home()
    instance = dg.DagsterInstance.get()
    registry = load_registry(config.registry)
    ids = datasets or registry.ids
    for ds in ids:
        registry.get(ds)
    known = set(instance.get_dynamic_partitions(datasets_partitions.name))
    new = [ds for ds in ids if ds not in known]
    if new:
        instance.add_dynamic_partitions(datasets_partitions.name, new)
    resources = defs.resources
    report = BuildReport()
    per_keys = _keys(PER_DATASET, select)
    for ds in ids if per_keys else []:
        log(f"materializing {', '.join(k.to_user_string() for k in per_keys)} for dataset {ds}")
        res = dg.materialize(ALL_ASSETS, selection=per_keys, partition_key=ds, instance=instance,
                             resources=resources, raise_on_error=False, run_config=QUIET, tags={"medbench/dataset": ds})
        (report.succeeded if res.success else report.failed).append(ds)
    global_keys = _keys(GLOBAL, select) + (_keys(PUBLISH, select) if select else [])  # publishing only on request
    if global_keys and not report.failed:
        log(f"materializing {', '.join(k.to_user_string() for k in global_keys)}")
        res = dg.materialize(ALL_ASSETS, selection=global_keys, instance=instance, resources=resources,
                             raise_on_error=False, run_config=QUIET)
        (report.succeeded if res.success else report.failed).append("global")
    return report
