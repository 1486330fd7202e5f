"""Near-duplicate images by perceptual hash, without comparing all pairs.

Multi-index hashing: a hash within ``b`` bits of another equals it exactly on at least one of ``b + 1``
bit chunks, so only hashes that share a chunk are compared. Selection uses it to thin look-alike units,
the leakage components to join groups whose planes look alike, and the exported-file check to find
look-alike items across datasets.
"""

from __future__ import annotations

import numpy as np


def hashes(hex_values) -> np.ndarray:
    """16-hex-digit pHashes as uint64 (missing ones as 0)."""
    values = hex_values.tolist() if hasattr(hex_values, "tolist") else list(hex_values)
    if values and all(isinstance(h, str) and len(h) == 16 for h in values):
        try:  # the usual case, in one call: every hash is 16 hex digits
            return np.frombuffer(bytes.fromhex("".join(values)), dtype=">u8").astype(np.uint64)
        except ValueError:
            pass
    return np.array([int(h, 16) if isinstance(h, str) and h else 0 for h in values], dtype=np.uint64)


def popcount(x: np.ndarray) -> np.ndarray:
    return np.bitwise_count(x).astype(np.int64)


def _chunks(bits: int) -> list[tuple[int, int]]:
    """(shift, width) of ``bits + 1`` chunks covering the 64 bits."""
    n = bits + 1
    edges = np.linspace(0, 64, n + 1).round().astype(int)
    return [(int(a), int(b - a)) for a, b in zip(edges[:-1], edges[1:])]


def near_duplicate_pairs(h: np.ndarray, bits: int) -> np.ndarray:
    """All (i, j), i < j, with Hamming(h[i], h[j]) <= bits, as an (m, 2) array (distinct hashes assumed)."""
    found = []
    for shift, width in _chunks(bits):
        key = (h >> np.uint64(shift)) & np.uint64((1 << width) - 1)
        order = np.argsort(key, kind="stable")
        ks = key[order]
        starts = np.r_[0, np.flatnonzero(ks[1:] != ks[:-1]) + 1]
        lengths = np.diff(np.r_[starts, len(ks)])
        left = np.repeat(starts + lengths, lengths) - np.arange(len(ks)) - 1  # partners after each, same run
        active = np.flatnonzero(left >= 1)
        d = 1
        while active.size:
            a, b = order[active], order[active + d]
            close = popcount(h[a] ^ h[b]) <= bits
            if close.any():
                found.append(np.stack([np.minimum(a, b)[close], np.maximum(a, b)[close]], axis=1))
            d += 1
            active = active[left[active] >= d]
    if not found:
        return np.zeros((0, 2), np.int64)
    pairs = np.concatenate(found).astype(np.int64)
    code = np.unique(pairs[:, 0] * len(h) + pairs[:, 1])  # one integer per pair: a 1-D unique, same order
    return np.stack([code // len(h), code % len(h)], axis=1)


def dedupe(h: np.ndarray, bits: int) -> np.ndarray:
    """Keep-mask over units in the given order: a unit is dropped when its hash is within ``bits`` of an
    earlier *kept* unit (the greedy rule, without comparing all pairs)."""
    keep = np.ones(len(h), bool)
    if len(h) < 2:
        return keep
    _, first, inverse = np.unique(h, return_index=True, return_inverse=True)
    keep[first[inverse] != np.arange(len(h))] = False  # exact repeats follow their first occurrence
    reps = np.sort(first)
    pairs = near_duplicate_pairs(h[reps], bits)
    if len(pairs):
        pairs = reps[pairs]
        pairs = pairs[np.lexsort((pairs[:, 0], pairs[:, 1]))]  # by the later unit: earlier ones are final
        for i, j in pairs.tolist():
            if keep[i] and keep[j]:
                keep[j] = False
    return keep
