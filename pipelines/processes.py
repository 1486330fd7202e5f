"""One way to spread independent jobs over processes (ingest, describe, render, ROI annotation)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor


def ordered_map(fn: Callable, jobs: Iterable, workers: int) -> Iterator:
    """``fn`` over ``jobs``, results in job order: in ``workers`` processes when there are more than one and at
    least two jobs (one job at a time each, so memory stays bounded by one job per process), else inline.
    ``fn`` and the jobs must pickle."""
    jobs = list(jobs)
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
            yield from pool.map(fn, jobs, chunksize=1)
    else:
        yield from map(fn, jobs)
