"""Materialize dataset partitions side by side, one process per partition (the CLI's executor).

Each worker runs an ordinary in-process `dagster.materialize` against the shared instance, so
runs, logs and data versions look exactly as if the partitions had run one after another.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from contextlib import contextmanager

import dagster as dg

from pipelines.processes import forked_pool, lighter_collections, start_workers_early

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


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


def materialize_assets(keys: list[str], partition: str | None = None, tags: dict[str, str] | None = None) -> str:
    """One run of the selected assets (with their checks), of one dataset partition when given; '' when the run
    succeeded, else why it failed."""
    from assets.definitions import ALL_ASSETS, ALL_CHECKS, defs
    from assets.workers import worker_modules
    # the run forks from the build process, whose imports are frozen: its steps' full collections then walk only
    # what they make, and come a tenth as often (the MeSH tables alone set off several in the vocabulary step)
    lighter_collections()
    if modules := worker_modules(keys):  # the server loads them while the run's first steps go on
        start_workers_early(*modules)
    res = dg.materialize([*ALL_ASSETS, *ALL_CHECKS], selection=[dg.AssetKey.from_user_string(k) for k in keys],
                         partition_key=partition, instance=dg.DagsterInstance.get(), resources=defs.resources,
                         raise_on_error=False, run_config=QUIET,
                         tags={**({"medbench/dataset": partition} if partition else {}), **(tags or {})})
    return "" if res.success else failure_reason(res)


@contextmanager
def _forked(workers: int) -> Iterator[ProcessPoolExecutor]:
    # fork: workers inherit the loaded definitions and the environment (DAGSTER_HOME, MEDBENCH_*); what the build
    # process holds (its imports) is frozen first, as Python's gc docs advise before a fork: a run's collections
    # then leave those objects alone (and their pages shared)
    gc.freeze()
    with forked_pool(workers) as pool:
        yield pool


def _outcome(fut: Future, what: str, log: Callable[[str], None]) -> str:
    try:
        return fut.result()
    except Exception as exc:  # a crashed worker fails its run, not the build
        log(f"{what}: worker failed: {exc}")
        return f"worker failed: {exc}"


def materialize_in_child(keys: list[str], log: Callable[[str], None] = print, tags: dict[str, str] | None = None,
                         partition: str | None = None) -> str:
    """`materialize_assets` in a child forked for the run, so the build process never holds a run's data: it
    stays at its imports (about 400 MB), and each run starts from there instead of from the peak of the run
    before it (bench/README.md: the export began at 770 MB when it followed the other stages in one process)."""
    with _forked(1) as pool:
        return _outcome(pool.submit(materialize_assets, keys, partition, tags), partition or "run", log)


def materialize_partitions(ids: list[str], keys: list[dg.AssetKey], workers: int | None = None,
                           log: Callable[[str], None] = print, tags: dict[str, str] | None = None,
                           meanwhile: Callable[[], None] | None = None) -> dict[str, str]:
    """Run `ids` with at most `workers` processes (default: the CPUs this process may use), each partition in
    a child process; dataset -> '' on success, else the failure reason. ``meanwhile`` runs here once the
    partitions are under way (what this process will need after them)."""
    names = [k.to_user_string() for k in keys]
    workers = max(1, min(workers or default_workers(), len(ids)))
    for ds in ids:
        log(f"materializing {', '.join(names)} for dataset {ds}")
    with _forked(workers) as pool:
        futures = {pool.submit(materialize_assets, names, ds, tags): ds for ds in ids}
        if meanwhile is not None:
            meanwhile()
        done = {futures[fut]: _outcome(fut, f"dataset {futures[fut]}", log) for fut in as_completed(futures)}
    return {ds: done[ds] for ds in ids}
