"""Worker processes run their libraries single-threaded, and forking after the parent used its thread pools
neither hangs nor leaves the parent limited."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from threadpoolctl import threadpool_info

from pipelines.processes import ordered_map


def _threads(_: int) -> tuple[int, int, float]:
    """(widest BLAS/OpenMP pool, OpenCV threads, a BLAS product) as seen inside a worker."""
    a = np.arange(400 * 400, dtype=np.float64).reshape(400, 400) / 1e5
    return max((i["num_threads"] for i in threadpool_info()), default=1), cv2.getNumThreads(), float((a @ a).sum())


@pytest.mark.timeout(120)
def test_workers_run_one_thread_each_after_the_parent_used_its_pools():
    a = np.random.default_rng(0).random((600, 600))
    _ = a @ a  # the parent's BLAS pool is started before the fork
    cv2.resize(np.zeros((1000, 1000), np.uint8), (500, 500))
    before = (max(i["num_threads"] for i in threadpool_info()), cv2.getNumThreads())
    out = list(ordered_map(_threads, range(4), 2))
    expected = float((np.arange(400 * 400, dtype=np.float64).reshape(400, 400) / 1e5 @
                      (np.arange(400 * 400, dtype=np.float64).reshape(400, 400) / 1e5)).sum())
    assert [o[:2] for o in out] == [(1, 1)] * 4
    assert all(o[2] == pytest.approx(expected, rel=1e-12) for o in out)
    assert (max(i["num_threads"] for i in threadpool_info()), cv2.getNumThreads()) == before  # the parent is restored
