"""Non-overlapping value bins on a fixed ladder, and option windows that place the key at a uniform rank."""

from __future__ import annotations

import math

import numpy as np


def bin_of(value: float, ladder: list[float], margin: float) -> int | None:
    """Index i with ladder[i] <= value < ladder[i+1], or None when the value lies within ``margin``
    (a relative distance) of an edge or outside the ladder: such a key would hinge on rounding."""
    for i in range(len(ladder) - 1):
        lo, hi = ladder[i], ladder[i + 1]
        if lo <= value < hi:
            if value < lo * (1 + margin) or value > hi / (1 + margin):
                return None
            return i
    return None


def fmt(v: float) -> str:
    return f"{v:g}"


def bin_text(i: int, ladder: list[float], unit: str) -> str:
    return f"{fmt(ladder[i])}–{fmt(ladder[i + 1])} {unit}".rstrip()


def window(rng: np.random.Generator, key: int, n_bins: int, size: int) -> list[int]:
    """``size`` consecutive bin indices holding ``key`` at a uniformly drawn rank (fewer ranks near the
    ends of the ladder); the key comes first, the others in ascending order."""
    ranks = [r for r in range(size) if 0 <= key - r and key - r + size <= n_bins]
    rank = ranks[int(rng.integers(len(ranks)))]
    start = key - rank
    others = [i for i in range(start, start + size) if i != key]
    return [key] + others


def log_distance(a: float, b: float) -> float:
    return abs(math.log(a) - math.log(b))
