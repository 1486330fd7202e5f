"""At most N units per answer, chosen for diversity (dataset, patient, slice axis/position, appearance).

A unit is one question: an image-level or box item, or a mask/contour twin pair. Within each
(task, granularity group, answer) the units are de-duplicated by perceptual hash and picked by
greedy farthest-point sampling from a seeded start, so the same inputs give the same selection.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import imagehash
import numpy as np
import pandas as pd
from PIL import Image

from pipelines.ids import stable_id
from pipelines.questions.validate import granularity_group

WEIGHTS = {"dataset": 1.0, "group": 1.0, "axis": 0.5, "position": 0.5, "appearance": 1.0}


@dataclass
class Unit:
    unit_id: str
    dataset_id: str
    group_id: str
    axis: str
    position: float  # slice index / depth along the axis, 0..1; 0.5 for 2D images
    phash: int


def phash_of(path: Path) -> int:
    with Image.open(path) as im:
        return int(str(imagehash.phash(im.convert("L"))), 16)


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def distance(a: Unit, b: Unit) -> float:
    return (WEIGHTS["dataset"] * (a.dataset_id != b.dataset_id) + WEIGHTS["group"] * (a.group_id != b.group_id)
            + WEIGHTS["axis"] * (a.axis != b.axis) + WEIGHTS["position"] * abs(a.position - b.position)
            + WEIGHTS["appearance"] * hamming(a.phash, b.phash) / 64)


def dedupe(units: list[Unit], bits: int) -> tuple[list[Unit], int]:
    """Drop units whose image is a near-duplicate (pHash within ``bits``) of an earlier one."""
    kept: list[Unit] = []
    for u in units:
        if any(hamming(u.phash, k.phash) <= bits for k in kept):
            continue
        kept.append(u)
    return kept, len(units) - len(kept)


def farthest_point(units: list[Unit], k: int, seed: int) -> list[Unit]:
    """Greedy max-min selection; start and ties follow a seeded hash order."""
    order = sorted(units, key=lambda u: stable_id(seed, "fps", u.unit_id))
    if len(order) <= k:
        return order
    chosen = [order[0]]
    best = np.array([distance(order[0], u) for u in order])
    best[0] = -1
    while len(chosen) < k:
        i = int(np.argmax(best))  # first maximum: seeded order breaks ties
        chosen.append(order[i])
        best = np.minimum(best, [distance(order[i], u) for u in order])  # chosen ones stay at -1
        best[i] = -1
    return chosen


def spread(units: list[Unit]) -> float:
    """Mean pairwise distance of a set of units (the diversity the selection maximizes)."""
    if len(units) < 2:
        return 0.0
    d = [distance(a, b) for i, a in enumerate(units) for b in units[i + 1:]]
    return float(np.mean(d))


def build_units(items: pd.DataFrame, slices: pd.DataFrame, data_root: Path) -> dict[str, Unit]:
    """One Unit per unit_id, described by its first item's image (the mask rendering for twins)."""
    if len(slices):
        slices = slices.assign(depth=slices.groupby(["sample_id", "axis"])["index"].transform("max") + 1)
    meta = slices.set_index("image_id")[["axis", "index", "depth"]].to_dict("index") if len(slices) else {}
    first = items.sort_values(["unit_id", "granularity"]).drop_duplicates("unit_id")
    out = {}
    for r in first.itertuples(index=False):
        m = meta.get(r.image_id, {"axis": "2d", "index": 0, "depth": 1})
        pos = 0.5 if not m["depth"] or m["depth"] <= 1 else m["index"] / max(m["depth"] - 1, 1)
        out[r.unit_id] = Unit(r.unit_id, r.dataset_id, r.group_id, str(m["axis"]), float(pos),
                              phash_of(data_root / r.image_path))
    return out


def select_units(items: pd.DataFrame, units: dict[str, Unit], cap: int, bits: int, seed: int) -> tuple[set[str], dict]:
    """Unit ids kept, and counts (groups, capped groups, near-duplicates dropped)."""
    keep: set[str] = set()
    stats = {"answer_groups": 0, "capped_groups": 0, "near_duplicates": 0}
    key = items.assign(g=items["granularity"].map(granularity_group))
    for _, group in key.drop_duplicates("unit_id").groupby(["clinical_vqa_task", "g", "answer_label"], sort=True):
        members = sorted((units[u] for u in group["unit_id"]), key=lambda u: stable_id(seed, "dedupe", u.unit_id))
        members, dropped = dedupe(members, bits)
        stats["near_duplicates"] += dropped
        stats["answer_groups"] += 1
        stats["capped_groups"] += len(members) > cap
        keep.update(u.unit_id for u in farthest_point(members, cap, seed))
    return keep, stats
