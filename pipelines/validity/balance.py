"""Key balance by construction: no task, and no dataset within a task, may be answered by always naming its most
frequent key.

A reader who learns that thorax items are nearly always "lower lobe of lung" needs no image. Within each
(dataset, task) and then within each task, the most frequent correct option text may answer at most chance +
``margin`` of the units (chance = the mean of 1 / number of options). Groups of fewer than a handful of units
(``key_balance_min_units``) are left alone: their modal share is no learnable prior. A (dataset, task) with a
single possible key asks nothing the image decides, so its units are dropped (other question types, such as localisation, ask about
those structures instead); elsewhere the most frequent key loses units, highest seeded hash first, until it fits.
Multi-answer units are left alone (their key is a set). Everything is seeded per unit, so the same units are kept
whatever else the benchmark holds, except where the task-wide rule binds across datasets.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from pipelines.ids import unit_interval
from pipelines.records import LETTERS


def key_texts(units: pd.DataFrame) -> list[str]:
    """The correct option's text per unit."""
    return [r[r["answer"]] if isinstance(r["answer"], str) and r["answer"] in LETTERS else ""
            for r in units[["answer", *LETTERS]].to_dict("records")]


def modal_share(keys: Iterable[str], n_options: Iterable[int]) -> tuple[float, float]:
    """(share of the most frequent key, chance = mean 1/k) of a set of units."""
    keys, k = list(keys), np.asarray(list(n_options), float)
    if not keys:
        return 0.0, 0.0
    return float(pd.Series(keys).value_counts().iloc[0] / len(keys)), float(np.mean(1.0 / k))


def _trim(part: pd.DataFrame, margin: float, order: pd.Series) -> list[str]:
    """Unit ids to drop so the modal key of ``part`` answers at most chance + margin of what is left."""
    drop: list[str] = []
    keep = part
    while len(keep):
        counts = keep["key"].value_counts()
        if len(counts) == 1:
            return drop + keep["unit_id"].tolist()  # one possible key: nothing here needs the image
        chance = float(np.mean(1.0 / keep["n_options"].to_numpy(float)))
        top, m, n = counts.index[0], int(counts.iloc[0]), len(keep)
        if m <= (chance + margin) * n:
            return drop
        need = max(1, int(np.ceil((m - (chance + margin) * n) / (1 - chance - margin))))
        modal = keep[keep["key"] == top]
        gone = modal.loc[order[modal.index].sort_values(ascending=False, kind="stable").index[:need], "unit_id"]
        drop += gone.tolist()
        keep = keep[~keep["unit_id"].isin(set(gone))]
    return drop


def _units(items: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, pd.Series]:
    units = items[~items["multi_answer"].astype(bool)].sort_values("unit_id").drop_duplicates("unit_id")
    units = units.assign(key=key_texts(units)) if len(units) else units.assign(key=pd.Series(dtype=object))
    return units, pd.Series(unit_interval(seed, "key-balance", units["unit_id"]), index=units.index)


def balance_keys(items: pd.DataFrame, margin: float, seed: int, min_units: int = 8) -> dict[str, str]:
    """unit id -> why it is dropped ('constant_key' or 'key_balance'), per (dataset, task) of at least
    ``min_units`` units. ``items``: one row per item (twins share a unit) with unit_id, dataset_id,
    clinical_vqa_task, multi_answer, n_options, answer and the option columns."""
    units, order = _units(items, seed)
    why: dict[str, str] = {}
    for _, part in units.groupby(["dataset_id", "clinical_vqa_task"], sort=True):
        if len(part) < min_units:
            continue
        single = part["key"].nunique() == 1
        for u in _trim(part, margin, order):
            why[u] = "constant_key" if single else "key_balance"
    return why


def balance_tasks(items: pd.DataFrame, margin: float, seed: int, min_units: int = 8) -> dict[str, str]:
    """unit id -> 'key_balance_task' for the units the task-wide rule drops across datasets (run after
    :func:`balance_keys`: it binds only where several datasets share a frequent key), for tasks of at least
    ``min_units`` units."""
    units, order = _units(items, seed)
    return {u: "key_balance_task" for _, part in units.groupby("clinical_vqa_task", sort=True)
            if len(part) >= min_units for u in _trim(part, margin, order)}
