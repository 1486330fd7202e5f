"""95 % intervals for accuracies and other per-item means.

Wilson's score interval treats items as independent draws. Items cut from one scan or patient are not, so the
clustered bootstrap resamples whole leakage groups (``split_group``) and takes percentiles of the mean; it is
seeded, so the same inputs give the same interval. Non-binary values (IoU, ACC_mcq, paired differences) always
use the bootstrap.
"""

from __future__ import annotations

import math
import zlib

import numpy as np

Z95 = 1.959963984540054
METHODS = ("wilson", "bootstrap")


def wilson(hits: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion hits/n (0, 0 for no items)."""
    if n == 0:
        return 0.0, 0.0
    p = hits / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def cluster_bootstrap(values: np.ndarray, clusters: np.ndarray, seed: int, label: str, n_boot: int = 2000,
                      level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the mean of ``values`` resampling whole clusters; the stream derives from
    (seed, label) so each breakdown cell is reproducible on its own."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return 0.0, 0.0
    codes, inverse = np.unique(np.asarray(clusters, dtype=str), return_inverse=True)
    sums = np.bincount(inverse, weights=values, minlength=len(codes))
    counts = np.bincount(inverse, minlength=len(codes)).astype(float)
    rng = np.random.default_rng([seed, zlib.crc32(label.encode())])
    draws = rng.integers(0, len(codes), size=(n_boot, len(codes)))
    means = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def mean_interval(values, clusters, method: str, seed: int, label: str, binary: bool = True) -> dict:
    """{'n', 'mean', 'lo', 'hi', 'method'} for one cell."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    mean = float(values.mean()) if n else 0.0
    if method == "wilson" and binary:
        lo, hi = wilson(float(values.sum()), n)
        used = "wilson"
    else:
        lo, hi = cluster_bootstrap(values, clusters, seed, label)
        used = "cluster_bootstrap"
    return {"n": n, "mean": round(mean, 6), "lo": round(lo, 6), "hi": round(hi, 6), "method": used}
