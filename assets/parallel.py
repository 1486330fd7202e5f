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

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def materialize_partition(dataset_id: str, keys: list[str], tags: dict[str, str] | None = None) -> bool:
    """One partition's selected per-dataset assets; True when the run succeeded."""
    from assets.definitions import ALL_ASSETS, defs
    res = dg.materialize(ALL_ASSETS, selection=[dg.AssetKey.from_user_string(k) for k in keys],
                         partition_key=dataset_id, instance=dg.DagsterInstance.get(), resources=defs.resources,
                         raise_on_error=False, run_config=QUIET,
                         tags={"medbench/dataset": dataset_id, **(tags or {})})
    return res.success


def materialize_partitions(ids: list[str], keys: list[dg.AssetKey], workers: int | None = None,
                           log: Callable[[str], None] = print, tags: dict[str, str] | None = None) -> dict[str, bool]:
    """Run `ids` with at most `workers` processes (default: the CPUs this process may use)."""
    names = [k.to_user_string() for k in keys]
    workers = max(1, min(workers or default_workers(), len(ids)))
    for ds in ids:
        log(f"materializing {', '.join(names)} for dataset {ds}")
    if workers == 1:
        return {ds: materialize_partition(ds, names, tags) for ds in ids}
    done: dict[str, bool] = {}
    # fork: workers inherit the loaded definitions and the environment (DAGSTER_HOME, MEDBENCH_*)
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as pool:
        futures = {pool.submit(materialize_partition, ds, names, tags): ds for ds in ids}
        for fut in as_completed(futures):
            ds = futures[fut]
            try:
                done[ds] = fut.result()
            except Exception as exc:  # a crashed worker fails its dataset, not the build
                log(f"dataset {ds}: worker failed: {exc}")
                done[ds] = False
    return {ds: done[ds] for ds in ids}
