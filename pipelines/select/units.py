"""At most N units per answer, chosen for diversity (dataset, patient, slice axis/position, appearance).

A unit is one question: an image-level or box item, or a mask/contour twin pair. Within each
(task, granularity group, answer) the units are de-duplicated by perceptual hash and picked by
greedy farthest-point sampling from a seeded start, so the same inputs give the same selection.

Both steps are array code and neither compares all pairs: near-duplicates are found by multi-index
hashing (pipelines.validity.near_duplicates), and farthest-point sampling updates one distance vector
per pick (k x n work for k picks from n units).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipelines.candidates.validate import granularity_group
from pipelines.ids import seeded_order, unit_interval
from pipelines.validity.leakage import leak_components
from pipelines.validity.near_duplicates import dedupe, hashes, popcount

WEIGHTS = {"dataset": 1.0, "group": 1.0, "axis": 0.5, "position": 0.5, "appearance": 1.0}
UNIT_COLUMNS = ["unit_id", "dataset_id", "group_id", "axis", "position", "phash", "clinical_vqa_task",
                "granularity", "answer_label", "balance_group"]


class Features:
    """The diversity features of a set of units as arrays (categorical columns as integer codes)."""

    def __init__(self, units: pd.DataFrame):
        self.dataset = pd.factorize(units["dataset_id"])[0]
        self.group = pd.factorize(units["group_id"])[0]
        self.axis = pd.factorize(units["axis"])[0]
        self.position = units["position"].to_numpy(float)
        self.hash = hashes(units["phash"])

    def subset(self, idx: np.ndarray) -> "Features":
        out = object.__new__(Features)
        for name in ("dataset", "group", "axis", "position", "hash"):
            setattr(out, name, getattr(self, name)[idx])
        return out

    def __len__(self) -> int:
        return len(self.position)

    def distance_to(self, i: int, idx: np.ndarray | slice = slice(None)) -> np.ndarray:
        return (WEIGHTS["dataset"] * (self.dataset[idx] != self.dataset[i])
                + WEIGHTS["group"] * (self.group[idx] != self.group[i])
                + WEIGHTS["axis"] * (self.axis[idx] != self.axis[i])
                + WEIGHTS["position"] * np.abs(self.position[idx] - self.position[i])
                + WEIGHTS["appearance"] * popcount(self.hash[idx] ^ self.hash[i]) / 64.0)


def farthest_point(f: Features, k: int) -> list[int]:
    """Greedy max-min selection over units already in seeded order (the first is the start; ties go
    to the earliest)."""
    n = len(f)
    if n <= k:
        return list(range(n))
    chosen = [0]
    best = f.distance_to(0)
    best[0] = -1.0
    while len(chosen) < k:
        i = int(np.argmax(best))
        chosen.append(i)
        best = np.minimum(best, f.distance_to(i))  # chosen ones stay at -1
        best[i] = -1.0
    return chosen


def spread(f: Features, idx: list[int]) -> float:
    """Mean pairwise distance of a set of units (the diversity the selection maximizes)."""
    if len(idx) < 2:
        return 0.0
    arr = np.asarray(idx)
    return float(np.mean([f.distance_to(i, arr[arr > i]).mean() for i in idx[:-1] if (arr > i).any()]))


def unit_frame(items: pd.DataFrame) -> pd.DataFrame:
    """One row per unit (its first item) with the columns selection reads."""
    return items.sort_values(["unit_id", "granularity"]).drop_duplicates("unit_id")[[c for c in UNIT_COLUMNS if c in items]]


def balanced_caps(group: np.ndarray, sizes: dict[int, int], balance: np.ndarray, cap: int, floor: int) -> dict[int, int]:
    """Per answer group, how many units to keep. Answer groups that share a balance group (the same question with
    different keys, e.g. counts of one structure) keep equally many, so the key cannot be guessed from how often
    each key occurs; an answer with fewer than ``floor`` units is dropped from its balance group instead."""
    caps = {g: cap for g in sizes}
    members: dict[str, list[int]] = {}
    for g, b in zip(group, balance):
        if isinstance(b, str) and b:
            members.setdefault(b, [])
            if g not in members[b]:
                members[b].append(g)
    for gs in members.values():
        enough = [g for g in gs if sizes[g] >= floor]
        level = min([cap] + [sizes[g] for g in enough]) if len(enough) > 1 else 0
        for g in gs:
            caps[g] = level if g in enough else 0
    return caps


def select_units(units: pd.DataFrame, cap: int, bits: int, seed: int, floor: int = 5,
                 why: dict[str, str] | None = None) -> tuple[set[str], dict]:
    """Unit ids kept, and counts (groups, capped groups, near-duplicates dropped, units dropped to balance keys).
    ``why``, when given, receives the reason each unit not kept was left out."""
    why = {} if why is None else why
    stats = {"answer_groups": 0, "capped_groups": 0, "near_duplicates": 0, "balance_dropped": 0}
    if units.empty:
        return set(), stats
    ids = units["unit_id"].to_numpy()
    feats = Features(units)
    dedupe_key, fps_key = seeded_order(units["unit_id"], seed, "dedupe"), seeded_order(units["unit_id"], seed, "fps")
    keys = pd.DataFrame({"task": units["clinical_vqa_task"].to_numpy(), "answer": units["answer_label"].to_numpy(),
                         "gg": units["granularity"].map(granularity_group).to_numpy()})
    group = keys.groupby(["task", "gg", "answer"], sort=True, dropna=False).ngroup().to_numpy()
    order = np.lexsort((dedupe_key, group))  # by answer group, then the seeded de-duplication order
    bounds = np.flatnonzero(np.diff(group[order])) + 1
    deduped = {}
    for members in np.split(order, bounds):
        kept = members[dedupe(feats.hash[members], bits)]
        stats["near_duplicates"] += len(members) - len(kept)
        why.update(dict.fromkeys(ids[np.setdiff1d(members, kept)], "near_duplicate"))
        deduped[int(group[members[0]])] = kept
    balance = units["balance_group"].to_numpy(object) if "balance_group" in units else np.full(len(units), None)
    caps = balanced_caps(group, {g: len(k) for g, k in deduped.items()}, balance, cap, floor)
    keep: list[str] = []
    for g, kept in deduped.items():
        stats["answer_groups"] += 1
        stats["capped_groups"] += len(kept) > cap
        stats["balance_dropped"] += max(0, min(len(kept), cap) - caps[g])
        if caps[g] == 0:
            why.update(dict.fromkeys(ids[kept], "balance_floor"))
            continue
        kept = kept[np.argsort(fps_key[kept], kind="stable")]
        picked = kept[farthest_point(feats.subset(kept), caps[g])]
        keep.extend(ids[picked])
        why.update(dict.fromkeys(ids[np.setdiff1d(kept, picked)], "answer_cap" if caps[g] == cap else "balance_level"))
    return set(keep), stats


def select_per_dataset(units: pd.DataFrame, cap: int, bits: int, seed: int, floor: int = 5
                       ) -> tuple[set[str], dict, dict[str, str]]:
    """Units kept, counts, and the units left out (unit id -> reason: near_duplicate, balance_floor, balance_level,
    answer_cap, cross_dataset_cap).

    Each dataset is selected on its own, with a seed derived from the run's seed and the dataset id, so adding or
    removing another dataset changes nothing here. Then, where one answer (task, granularity, answer) exceeds
    ``cap`` across datasets, the units with the highest seeded hash of their id go: that drop depends on each unit
    alone, so it changes other datasets' items only where the cap binds."""
    keep: set[str] = set()
    why: dict[str, str] = {}
    stats = {"answer_groups": 0, "capped_groups": 0, "near_duplicates": 0, "balance_dropped": 0}
    for ds, part in units.groupby("dataset_id", sort=True):
        kept, st = select_units(part, cap, bits, f"{seed}:{ds}", floor, why)
        keep |= kept
        for k, v in st.items():
            stats[k] += v
    chosen = units[units["unit_id"].isin(keep)]
    capped: dict[str, str] = {}
    if not chosen.empty:
        gg = chosen["granularity"].map(granularity_group)
        order = pd.Series(unit_interval(seed, "cross-dataset-cap", chosen["unit_id"]), index=chosen.index)
        for _, idx in chosen.groupby([chosen["clinical_vqa_task"], gg, chosen["answer_label"]], sort=True,
                                     dropna=False).groups.items():
            if len(idx) > cap and chosen.loc[idx, "dataset_id"].nunique() > 1:
                over = order[idx].sort_values(kind="stable").index[cap:]
                capped.update(dict.fromkeys(chosen.loc[over, "unit_id"], "cross_dataset_cap"))
    stats["cross_dataset_capped"] = len(capped)
    return keep - set(capped), stats, {**why, **capped}


def cap_per_component(rows: pd.DataFrame, cap: int, bits: int, seed: int) -> dict[str, str]:
    """The units to drop (unit id -> reason) so that no leakage component gives a task more than ``cap`` units.

    ``rows`` are the selected units' items (columns unit_id, group_id, sha256, phash, clinical_vqa_task,
    answer_label). A registry where one patient fills most of a task would otherwise measure that patient, not
    the task, and no patient-disjoint split could give val its share. Within an over-full (component, task) the
    answers take turns (each answer's units in a seeded order), so the kept units keep the answers' balance; which
    unit goes depends on its component alone, so a dataset that shares no component with another is unaffected
    by it."""
    if rows.empty or cap <= 0:
        return {}
    comp = leak_components(rows, bits)
    units = rows.assign(_c=comp).sort_values("unit_id").drop_duplicates("unit_id")
    units = units.assign(_h=unit_interval(seed, "component-task-cap", units["unit_id"]))
    drop: dict[str, str] = {}
    for _, part in units.groupby(["_c", "clinical_vqa_task"], sort=True):
        if len(part) <= cap:
            continue
        part = part.sort_values("_h", kind="stable")
        turn = part.groupby("answer_label", sort=False, dropna=False).cumcount()
        ranked = part.assign(_t=turn).sort_values(["_t", "_h"], kind="stable")
        drop.update(dict.fromkeys(ranked["unit_id"].iloc[cap:], "component_task_cap"))
    return drop
