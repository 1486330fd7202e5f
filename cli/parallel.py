"""Materialize dataset partitions side by side, one process per partition (the CLI's executor).

Each worker runs an ordinary in-process `dagster.materialize` against the shared instance, so
runs, logs and data versions look exactly as if the partitions had run one after another.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed

import dagster as dg

from pipelines.processes import one_thread_each

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


def materialize_partition(dataset_id: str, keys: list[str], tags: dict[str, str] | None = None) -> str:
    """One partition's selected per-dataset assets; '' when the run succeeded, else why it failed."""
    from assets.definitions import ALL_ASSETS, defs
    res = dg.materialize(ALL_ASSETS, selection=[dg.AssetKey.from_user_string(k) for k in keys],
                         partition_key=dataset_id, instance=dg.DagsterInstance.get(), resources=defs.resources,
                         raise_on_error=False, run_config=QUIET,
                         tags={"medbench/dataset": dataset_id, **(tags or {})})
    return "" if res.success else failure_reason(res)


def materialize_partitions(ids: list[str], keys: list[dg.AssetKey], workers: int | None = None,
                           log: Callable[[str], None] = print, tags: dict[str, str] | None = None) -> dict[str, str]:
    """Run `ids` with at most `workers` processes (default: the CPUs this process may use); dataset ->
    '' on success, else the failure reason."""
    names = [k.to_user_string() for k in keys]
    workers = max(1, min(workers or default_workers(), len(ids)))
    for ds in ids:
        log(f"materializing {', '.join(names)} for dataset {ds}")
    if workers == 1:
        return {ds: materialize_partition(ds, names, tags) for ds in ids}
    done: dict[str, str] = {}
    # fork: workers inherit the loaded definitions and the environment (DAGSTER_HOME, MEDBENCH_*)
    with one_thread_each(), ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as pool:
        futures = {pool.submit(materialize_partition, ds, names, tags): ds for ds in ids}
        for fut in as_completed(futures):
            ds = futures[fut]
            try:
                done[ds] = fut.result()
            except Exception as exc:  # a crashed worker fails its dataset, not the build
                log(f"dataset {ds}: worker failed: {exc}")
                done[ds] = f"worker failed: {exc}"
    return {ds: done[ds] for ds in ids}
