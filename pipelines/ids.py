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
