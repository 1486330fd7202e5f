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

from assets.changes import globals_up_to_date, sync_registry
from assets.definitions import (
    ALL_ASSETS,
    ANNOTATE,
    GLOBAL,
    PER_DATASET,
    PER_DATASET_KEYS,
    PUBLISH,
)
from assets.workers import load_step_modules, worker_modules
from cli.parallel import materialize_in_child, materialize_partitions
from pipelines.config import PROJECT_ROOT, PipelineConfig
from pipelines.housekeeping import build_lock, pid_alive, remove_stale_staging
from pipelines.processes import start_workers_early
from pipelines.run_state import (
    forget_globals,
    forget_llm_calls,
    llm_calls,
    record_globals,
    record_outcomes,
    usable,
)
from pipelines.sources.registry import registry_of
from pipelines.validity.reviews import decisions_newer_than


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
    llm_failed: dict[str, tuple[int, int]] = field(default_factory=dict)  # step -> (failed, requests), this run

    @property
    def templates_missing(self) -> int:
        """LLM template requests of this run that failed: templates asked for that could not be made."""
        return self.llm_failed.get("question_templates", (0, 0))[0]


ASSET_NAMES = sorted(k.to_user_string() for a in ALL_ASSETS for k in a.keys)
# a stage's name (its asset group, its package under pipelines/) selects every asset of the stage
STAGES: dict[str, list[str]] = {}
for _a in ALL_ASSETS:
    for _k, _g in _a.group_names_by_key.items():
        STAGES.setdefault(_g, []).append(_k.to_user_string())


GROUP_OF = {name: stage for stage, names in STAGES.items() for name in names}
# the stages that write the published files run in a process of their own (runs_of)
WRITERS = ("export", "annotate", "publish")


def runs_of(keys: list[dg.AssetKey]) -> list[list[dg.AssetKey]]:
    """The cross-dataset keys as two runs, each in a fresh process: the stages up to rendering, then the ones
    that write and check the published files. The export's memory then starts from the imports, not from what
    selection and rendering left in the process (bench/README.md); empty runs are left out."""
    first = [k for k in keys if GROUP_OF.get(k.to_user_string()) not in WRITERS]
    return [run for run in (first, [k for k in keys if k not in first]) if run]


def expand_selection(select: list[str] | None) -> list[str] | None:
    """Asset names as given, stage names replaced by their assets' names (order kept, no repeats)."""
    if not select:
        return select
    return list(dict.fromkeys(n for s in select for n in STAGES.get(s, [s])))


def _keys(assets: list[dg.AssetsDefinition], select: list[str] | None) -> list[dg.AssetKey]:
    keys = [k for a in assets for k in a.keys]
    return [k for k in keys if not select or k.to_user_string() in select]


def _server_for(keys: list[str]) -> None:
    """One worker server for the runs of ``keys`` (render, export, the export's checks), started here before they
    fork from this process: they and their forks take their workers from it instead of each starting its own
    (pipelines.processes). A server started for the dataset partitions without those modules is let go; the
    partition runs already forked keep theirs until they end."""
    if modules := worker_modules(keys):
        start_workers_early(*modules, fresh=True)


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


def check_request(registry_ids: list[str], select: list[str] | None, datasets: list[str] | None) -> None:
    unknown = sorted(set(select or ()) - set(ASSET_NAMES) - set(STAGES))
    if unknown:
        raise BuildError(f"unknown stage or asset {', '.join(unknown)}; stages: {', '.join(STAGES)}; "
                         f"assets: {', '.join(ASSET_NAMES)}")
    missing = sorted(set(datasets or ()) - set(registry_ids))
    if missing:
        raise BuildError(f"dataset(s) {', '.join(missing)} not in the registry; registered: "
                         f"{', '.join(registry_ids) or '(none)'}")


def build(config: PipelineConfig, select: list[str] | None = None, datasets: list[str] | None = None,
          log: Callable[[str], None] = print, step: Callable[[str], None] | None = None, force: bool = False,
          workers: int | None = None) -> BuildReport:
    """Changed per-dataset partitions (in parallel), then the cross-dataset assets if anything changed.

    Up-to-date datasets are skipped (same content, settings and code as materialized); `force` or an
    explicit `select` re-runs. Datasets gone from the registry lose their partition and outputs. A dataset
    that fails is recorded with its reason and the cross-dataset stages run on the others.
    `step(label)` is called before each stage (a progress display counts them)."""
    registry = registry_of(config)
    check_request(registry.ids, select, datasets)
    select = expand_selection(select)
    ensure_dagster_home()
    with build_lock(config.data_root):
        return _build(config, registry.ids, select, datasets or registry.ids, log, step or (lambda _: None),
                      force, workers)


def planned_steps(registry_ids: list[str], select: list[str] | None, datasets: list[str] | None) -> int:
    select = expand_selection(select)
    per, glob = _keys(PER_DATASET, select), _keys(GLOBAL, select)
    return (1 if per else 0) + (1 if glob else 0)  # the partitions run side by side as one stage


def _build(config: PipelineConfig, registry_ids: list[str], select: list[str] | None, ids: list[str],
           log: Callable[[str], None], step: Callable[[str], None], force: bool, workers: int | None) -> BuildReport:
    instance = dg.DagsterInstance.get()
    report = BuildReport(cleaned=remove_stale_staging(config.data_root))
    for path in report.cleaned:
        log(f"removed stale staging folder {path}")
    if (orphans := mark_orphan_runs(instance)):
        log(f"marked {orphans} run(s) of killed builds as failed")
    registry = registry_of(config)
    plan = sync_registry(instance, registry, config, PER_DATASET_KEYS, None if ids == registry_ids else ids,
                         force or bool(select), log)
    tags = {"medbench/build": "1", "medbench/pid": str(os.getpid())}
    per_keys = _keys(PER_DATASET, select)
    if per_keys and plan.stale:
        step(f"datasets: {', '.join(plan.stale)}")
    global_keys = _keys(GLOBAL, select) + (_keys(PUBLISH, select) if select else [])  # publishing only on request
    if select or config.annotate.enabled:  # ROI annotations when named or switched on
        global_keys += _keys(ANNOTATE, select)
    later = [k.to_user_string() for k in global_keys]  # their runs fork from this process: it loads their modules

    def meanwhile() -> None:  # the partition runs have forked (with the partitions' worker server): get the rest ready
        load_step_modules(later)
        _server_for(later)

    results = materialize_partitions(plan.stale, per_keys, workers, log, tags,
                                     meanwhile=meanwhile if plan.stale else None) if per_keys else {}
    for ds, why in results.items():
        if not why:
            report.succeeded.append(ds)
        else:
            report.failed.append(ds)
            report.reasons[ds] = why
            log(f"dataset {ds} failed: {why}")
    if per_keys and results:
        record_outcomes(config.data_root, {ds: report.reasons[ds] for ds in report.failed}, report.succeeded)
    inputs = {ds: plan.versions[ds] for ds in usable(registry.ids, config.data_root) if ds in plan.versions}
    stale_globals = force or bool(select) or plan.changed_anything or \
        not globals_up_to_date(config, inputs) or \
        decisions_newer_than(config, config.data_root / "tables" / "benchmark.parquet")  # reviewers rejected items
    if global_keys and stale_globals:
        step("cross-dataset stages")
        if report.failed:
            log(f"cross-dataset stages run without the failed dataset(s): {', '.join(report.failed)}")
        log(f"materializing {', '.join(k.to_user_string() for k in global_keys)}")
        llm_steps = [k.to_user_string() for k in global_keys if k.to_user_string() in ("label_vocab", "question_templates")]
        forget_llm_calls(config.data_root, llm_steps)  # what this run's steps ask for, not what an earlier run did
        _server_for(later)  # started while the partitions ran, unless none did
        why = ""
        for run_keys in runs_of(global_keys):  # a run starts only when the one before it succeeded
            why = why or materialize_in_child([k.to_user_string() for k in run_keys], log, tags)
        report.llm_failed = {step: (c["failed"], c["requests"]) for step, c in llm_calls(config.data_root).items()
                             if c.get("failed") and step in llm_steps}
        for step, (failed, requests) in sorted(report.llm_failed.items()):
            log(f"{step}: {failed} of {requests} LLM request(s) failed")
        if not why:
            report.succeeded.append("global")
            # the data root records what its cross-dataset outputs were built from (a partial --select does not)
            record_globals(config.data_root, inputs) if not select else forget_globals(config.data_root)
        else:
            forget_globals(config.data_root)
            report.failed.append("global")
            report.reasons["global"] = why
    elif global_keys:
        log("cross-dataset assets are up to date (--force re-runs them)")
    return report
