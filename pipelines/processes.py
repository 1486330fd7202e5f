"""One way to spread independent jobs over processes (ingest, describe, render, ROI annotation)."""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager


@contextmanager
def one_thread_each() -> Iterator[None]:
    """While the workers run: one BLAS/OpenMP thread and one OpenCV thread in this process, so the workers it forks
    start with the same. The workers already fill the cores; each library's own pool on top of them (OpenBLAS
    starts one thread per core in every process, and its idle threads spin) made describe and render take twice as
    long on 2 cores (bench/README.md). Set in the parent, before the fork: a forked child that resizes a thread
    pool its parent started can wait forever for threads it does not have."""
    import cv2
    from threadpoolctl import threadpool_limits
    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        cv2.setNumThreads(before)


def ordered_map(fn: Callable, jobs: Iterable, workers: int) -> Iterator:
    """``fn`` over ``jobs``, results in job order: in ``workers`` processes when there are more than one and at
    least two jobs (one job at a time each, so memory stays bounded by one job per process), else inline.
    ``fn`` and the jobs must pickle."""
    jobs = list(jobs)
    if workers > 1 and len(jobs) > 1:
        with one_thread_each(), ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
            yield from pool.map(fn, jobs, chunksize=1)
    else:
        yield from map(fn, jobs)


def release_freed_memory() -> None:
    """Hand the memory freed by earlier steps back to the system, so a step that runs in the same process as the
    ones before it starts from what is alive, not from their peak: Arrow's pool (mimalloc keeps freed pages for
    reuse) and the C heap (glibc's malloc_trim; a no-op where the C library has none), after collecting the
    cycles that still hold an earlier step's frames."""
    import gc

    import pyarrow as pa
    gc.collect()
    pa.default_memory_pool().release_unused()
    name = ctypes.util.find_library("c")
    trim = getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    if trim is not None:
        trim(0)
