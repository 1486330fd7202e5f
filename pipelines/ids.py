"""Stable identifiers: hashes of the inputs that define a row, so re-runs are idempotent."""

from __future__ import annotations

import hashlib

import numpy as np


def stable_id(*parts: object, length: int = 16) -> str:
    """Hex digest of the parts joined unambiguously; same parts give the same id everywhere."""
    h = hashlib.sha256()
    for part in parts:
        h.update(repr(part).encode("utf-8"))
        h.update(b"\x1f")
    return h.hexdigest()[:length]


def salted_hash(value: str, salt: str, length: int = 16) -> str:
    """One-way pseudonym for a patient identifier; the raw value never reaches an output."""
    return hashlib.sha256(f"{salt}\x1f{value}".encode("utf-8")).hexdigest()[:length]


def derived_rng(seed: int, *key: object) -> np.random.Generator:
    """A random generator derived from (seed, stable key): every random choice is reproducible."""
    return np.random.default_rng(int(stable_id(seed, *key), 16))


def stable_ids(*columns, length: int = 16) -> list[str]:
    """Row-wise ids over columns of equal length (strings or numbers), for bulk rows: BLAKE2b of the
    parts joined by a separator no id part contains. Same inputs give the same ids everywhere."""
    cols = [c.tolist() if hasattr(c, "tolist") else list(c) for c in columns]  # bulk, not element-wise
    out = []
    for parts in zip(*cols):
        data = "\x1f".join(str(p) for p in parts).encode("utf-8")
        out.append(hashlib.blake2b(data, digest_size=length // 2).hexdigest())
    return out
