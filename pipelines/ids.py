"""Stable identifiers: hashes of the inputs that define a row, so re-runs are idempotent."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


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


def _strings(column) -> list[str]:
    """A column's values as ``str`` would print them, read in bulk (Arrow-backed pandas columns iterate slowly
    element by element)."""
    if isinstance(column, (pa.Array, pa.ChunkedArray)):
        values = column.to_pylist()
    elif hasattr(column, "array") and isinstance(getattr(column.array, "_pa_array", None), pa.ChunkedArray):
        values = column.array._pa_array.to_pylist()
    else:
        values = column.tolist() if hasattr(column, "tolist") else list(column)
    return values if all(type(v) is str for v in values) else [str(v) for v in values]


def stable_ids(*columns, length: int = 16) -> list[str]:
    """Row-wise ids over columns of equal length (strings or numbers), for bulk rows: BLAKE2b of the
    parts joined by a separator no id part contains. Same inputs give the same ids everywhere."""
    parts = [pa.array(_strings(c), pa.string()) for c in columns]
    joined = pc.binary_join_element_wise(*parts, "\x1f").to_pylist() if parts else []
    size = length // 2
    return [hashlib.blake2b(d.encode("utf-8"), digest_size=size).hexdigest() for d in joined]


def unit_interval(seed: int, purpose: str, ids) -> np.ndarray:
    """A reproducible draw in [0, 1) per id (64-bit BLAKE2b of seed, purpose and id): a threshold on it picks a
    share of ids item by item, so whether one id is picked never depends on which other ids exist."""
    prefix = f"{seed}\x1f{purpose}\x1f".encode()
    values = [int.from_bytes(hashlib.blake2b(prefix + str(i).encode(), digest_size=8).digest(), "big")
              for i in _strings(ids)]
    return np.array(values, dtype=np.float64) / 2.0**64


def seeded_order(ids: pd.Series, seed: int, purpose: str) -> np.ndarray:
    """A reproducible pseudo-random sort key per id (64-bit BLAKE2b of seed, purpose and id)."""
    prefix = f"{seed}\x1f{purpose}\x1f".encode()
    return np.array([int.from_bytes(hashlib.blake2b(prefix + u.encode(), digest_size=8).digest(), "big")
                     for u in ids.tolist()], dtype=np.uint64)
