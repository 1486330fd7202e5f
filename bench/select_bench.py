"""Selection at scale: near-duplicate merging + farthest-point sampling over 1,000,000 synthetic units.

Run: ``python -m bench.select_bench [--units 1000000]``

Units mimic a large registry: 40 datasets, 20,000 patients, three slice axes, 400 answer groups of
skewed sizes (the largest holds a quarter of all units, as one common organ would), and pHashes drawn
around 50,000 appearance centres so that near-duplicates really occur. Reported: wall time and peak
RSS of the selection alone (targets: <= 60 s, <= 4 GB), units kept and near-duplicates dropped.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import pandas as pd

from bench.scale_bench import report
from pipelines.select.units import select_units


def synthetic_units(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    centres = rng.integers(0, 2**63, 50_000, dtype=np.uint64)
    h = centres[rng.integers(0, len(centres), n)]
    flips = rng.integers(0, 64, (n, 6)).astype(np.uint64)  # up to 6 random bit flips per unit
    keep = rng.random((n, 6)) < 0.5
    for k in range(6):
        h = np.where(keep[:, k], h ^ (np.uint64(1) << flips[:, k]), h)
    weights = 1.0 / np.arange(1, 401) ** 1.1
    weights[0] = weights.sum() / 3  # one group holds about a quarter of the units
    answers = rng.choice(400, n, p=weights / weights.sum())
    return pd.DataFrame({
        "unit_id": [f"u{i:08d}" for i in range(n)],
        "dataset_id": np.char.add("ds", rng.integers(0, 40, n).astype(str)),
        "group_id": np.char.add("p", rng.integers(0, 20_000, n).astype(str)),
        "axis": rng.choice(["axial", "coronal", "sagittal"], n), "position": rng.random(n),
        "phash": [f"{int(x):016x}" for x in h], "clinical_vqa_task": "Organ Recognition - Abdomen",
        "granularity": rng.choice(["mask", "box"], n), "answer_label": np.char.add("label", answers.astype(str))})


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--units", type=int, default=1_000_000)
    args = ap.parse_args(argv)
    units = synthetic_units(args.units)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t = time.perf_counter()
    keep, stats = select_units(units, cap=30, bits=4, seed=1)
    wall = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out = {"units": args.units, "wall_s": round(wall, 2), "peak_rss_gb": round(peak / 2**30, 3),
           "rss_before_gb": round(before / 2**30, 3), "kept": len(keep), **stats,
           "targets": {"wall_s": 60, "peak_rss_gb": 4}}
    return report("select_bench", out)


if __name__ == "__main__":
    main()
