"""Materialize the asset graph without the UI (used by `medbench build` and `make demo`).

Each dataset partition runs on its own; a dataset that fails is recorded with its reason
(pipelines.run_state) and the cross-dataset stages still run on the datasets that succeeded.
"""

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from assets.definitions import ALL_ASSETS, GLOBAL, PER_DATASET, PUBLISH, defs
from assets.partitions import datasets_partitions
from pipelines.config import PROJECT_ROOT, PipelineConfig
from pipelines.housekeeping import build_lock, pid_alive, remove_stale_staging
from pipelines.registry import load_registry
from pipelines.run_state import record_outcomes


class BuildError(ValueError):
    """A user mistake in the build request (unknown asset or dataset)."""


def ensure_dagster_home() -> Path:
    """Use $DAGSTER_HOME, or the project's .dagster/ with the project's dagster.yaml (SQLite)."""
    home = Path(os.environ.get("DAGSTER_HOME") or PROJECT_ROOT / ".dagster").resolve()
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if not target.exists():
        shutil.copyfile(PROJECT_ROOT / "dagster.yaml", target)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def export_config_env(config: PipelineConfig, config_file: str | None, strict: bool = False) -> None:
    """Runs read their settings through MedbenchResource, which falls back to these variables."""
    os.environ["MEDBENCH_REGISTRY"] = str(config.registry)
    os.environ["MEDBENCH_DATA_ROOT"] = str(config.data_root)
    os.environ["MEDBENCH_SEED"] = str(config.seed)
    if strict:
        os.environ["MEDBENCH_STRICT"] = "1"
    if config_file:
        os.environ["MEDBENCH_CONFIG"] = str(config_file)


@dataclass
class BuildReport:
    succeeded: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)  # failed dataset (or 'global') -> why
    cleaned: list[Path] = field(default_factory=list)  # stale staging folders removed


ASSET_NAMES = sorted(k.to_user_string() for a in ALL_ASSETS for k in a.keys)


def _keys(assets: list[dg.AssetsDefinition], select: list[str] | None) -> list[dg.AssetKey]:
    keys = [k for a in assets for k in a.keys]
    return [k for k in keys if not select or k.to_user_string() in select]


def failure_reason(result: dg.ExecuteInProcessResult) -> str:
    """The first failed step with the message of its innermost error (the user's exception), and the
    failed blocking checks with their descriptions (which name e.g. the unresolved labels)."""
    parts = []
    for event in result.get_step_failure_events()[:1]:
        err = event.event_specific_data.error if event.event_specific_data else None
        while err is not None and err.cause is not None:
            err = err.cause
        message = (err.message.strip().splitlines() or ["?"])[0] if err else "failed"
        parts.append(f"{event.step_key}: {message}")
    for check in result.get_asset_check_evaluations():
        if not check.passed and check.severity == dg.AssetCheckSeverity.ERROR:
            parts.append(f"check {check.check_name}: {check.description or 'failed'}")
    return "; ".join(parts) or "run failed (see the Dagster run logs)"


def mark_orphan_runs(instance: dg.DagsterInstance) -> int:
    """Runs left STARTED by a killed `medbench build` (its pid is gone) are marked failed."""
    runs = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED],
                                                   tags={"medbench/build": "1"}))
    n = 0
    for run in runs:
        pid = run.tags.get("medbench/pid", "")
        if pid.isdigit() and not pid_alive(int(pid)):
            instance.report_run_failed(run)
            n += 1
    return n


QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def check_request(registry_ids: list[str], select: list[str] | None, datasets: list[str] | None) -> None:
    unknown = sorted(set(select or ()) - set(ASSET_NAMES))
    if unknown:
        raise BuildError(f"unknown asset(s) {', '.join(unknown)}; valid: {', '.join(ASSET_NAMES)}")
    missing = sorted(set(datasets or ()) - set(registry_ids))
    if missing:
        raise BuildError(f"dataset(s) {', '.join(missing)} not in the registry; registered: "
                         f"{', '.join(registry_ids) or '(none)'}")


def build(config: PipelineConfig, select: list[str] | None = None, datasets: list[str] | None = None,
          log: Callable[[str], None] = print, step: Callable[[str], None] | None = None) -> BuildReport:
    """Per-dataset assets once per dataset partition, then the cross-dataset assets.

    `step(label)` is called before each Dagster run (a progress display counts them)."""
    registry = load_registry(config.registry, config.standardize.ct_windows)
    check_request(registry.ids, select, datasets)
    ensure_dagster_home()
    with build_lock(config.data_root):
        return _build(config, registry.ids, select, datasets or registry.ids, log, step or (lambda _: None))


def planned_steps(registry_ids: list[str], select: list[str] | None, datasets: list[str] | None) -> int:
    per, glob = _keys(PER_DATASET, select), _keys(GLOBAL, select)
    return (len(datasets or registry_ids) if per else 0) + (1 if glob else 0)


def _build(config: PipelineConfig, registry_ids: list[str], select: list[str] | None, ids: list[str],
           log: Callable[[str], None], step: Callable[[str], None]) -> BuildReport:
    instance = dg.DagsterInstance.get()
    report = BuildReport(cleaned=remove_stale_staging(config.data_root))
    for path in report.cleaned:
        log(f"removed stale staging folder {path}")
    if (orphans := mark_orphan_runs(instance)):
        log(f"marked {orphans} run(s) of killed builds as failed")
    known = set(instance.get_dynamic_partitions(datasets_partitions.name))
    new = [ds for ds in ids if ds not in known]
    if new:
        instance.add_dynamic_partitions(datasets_partitions.name, new)
    resources = defs.resources
    tags = {"medbench/build": "1", "medbench/pid": str(os.getpid())}
    per_keys = _keys(PER_DATASET, select)
    for ds in ids if per_keys else []:
        step(f"dataset {ds}")
        log(f"materializing {', '.join(k.to_user_string() for k in per_keys)} for dataset {ds}")
        res = dg.materialize(ALL_ASSETS, selection=per_keys, partition_key=ds, instance=instance,
                             resources=resources, raise_on_error=False, run_config=QUIET,
                             tags={**tags, "medbench/dataset": ds})
        if res.success:
            report.succeeded.append(ds)
        else:
            report.failed.append(ds)
            report.reasons[ds] = failure_reason(res)
            log(f"dataset {ds} failed: {report.reasons[ds]}")
    if per_keys:
        record_outcomes(config.data_root, {ds: report.reasons[ds] for ds in report.failed}, report.succeeded)
    global_keys = _keys(GLOBAL, select) + (_keys(PUBLISH, select) if select else [])  # publishing only on request
    if global_keys:
        step("cross-dataset stages")
        if report.failed:
            log(f"cross-dataset stages run without the failed dataset(s): {', '.join(report.failed)}")
        log(f"materializing {', '.join(k.to_user_string() for k in global_keys)}")
        res = dg.materialize(ALL_ASSETS, selection=global_keys, instance=instance, resources=resources,
                             raise_on_error=False, run_config=QUIET, tags=tags)
        if res.success:
            report.succeeded.append("global")
        else:
            report.failed.append("global")
            report.reasons["global"] = failure_reason(res)
    return report
