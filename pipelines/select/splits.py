"""val/test split disjoint by leakage component (patient, volume or source image; twins and copies alike).

Three steps, each deterministic:

1. Per dataset, components in seeded-hash order go to val until the dataset's val share reaches
   ``val_fraction`` (a component that would overshoot by more than half its size stays in test), and a dataset
   with two or more components gets at least one in each split. A component spanning datasets is decided once,
   by the first dataset (in id order) holding it.
2. Coverage: a task or modality with at least ``val_cover_min_items`` test items and none in val gets the
   smallest test component holding it moved to val, when the overall val share stays within ``val_share_range``
   and the task keeps at least half its items in test.
3. Share: while the overall val share is below the range, the smallest test components move to val (never past
   the upper end, overall or within a dataset: a dataset is scored on its test items); while it is above, the
   largest val components whose tasks stay covered move back.

Components are never cut, so a registry dominated by one patient cannot reach the range; the summary reports the
share reached.
"""

from __future__ import annotations

import pandas as pd

from pipelines.ids import stable_id

COVER = ("clinical_vqa_task", "modality")


def _per_dataset(items: pd.DataFrame, val_fraction: float, seed: int, by: str) -> set[str]:
    decided: dict[str, str] = {}
    for ds, part in items.groupby("dataset_id", sort=True):
        sizes = part.groupby(by).size()
        fixed = [g for g in sizes.index if g in decided]
        order = sorted((g for g in sizes.index if g not in decided), key=lambda g: stable_id(seed, "split", ds, g))
        target = val_fraction * len(part)
        val_groups = [g for g in fixed if decided[g] == "val"]
        n_val = int(sizes[val_groups].sum()) if val_groups else 0
        n_groups = len(sizes)
        for g in order:
            if n_val >= target or (n_groups > 1 and len(val_groups) == n_groups - 1):
                break
            if n_val + sizes[g] / 2 > target:
                continue  # this group would overshoot val's share by more than it fills: leave it in test
            val_groups.append(g)
            n_val += int(sizes[g])
        if n_groups > 1 and not val_groups and order:
            val_groups = order[:1]
        decided.update({g: "val" if g in val_groups else "test" for g in sizes.index})
    return {g for g, v in decided.items() if v == "val"}


def assign_splits(items: pd.DataFrame, val_fraction: float, seed: int, by: str = "group_id",
                  share_range: tuple[float, float] = (0.0, 1.0), cover_min_items: int | None = None) -> pd.Series:
    """'val' or 'test' per row of ``items`` (columns dataset_id, ``by``, and the COVER columns for step 2)."""
    val = _per_dataset(items, val_fraction, seed, by)
    comp = items[by]
    size = comp.value_counts()
    n = len(items)
    lo, hi = share_range

    def share() -> float:
        return float(size[sorted(val)].sum()) / n if val and n else 0.0

    def ranked(groups) -> list[str]:  # smallest first, ties by seeded hash
        return sorted(groups, key=lambda g: (int(size[g]), stable_id(seed, "split-move", g)))

    covered = [c for c in COVER if c in items] if cover_min_items is not None else []
    for col in covered:
        for value, part in items.groupby(col, sort=True):
            in_val = part[by].isin(val)
            if in_val.any() or (~in_val).sum() < cover_min_items:
                continue
            held = part[by].value_counts()
            for g in ranked(set(part[by])):  # the task keeps at least half its items in test
                if share() + size[g] / n <= hi and held[g] <= len(part) / 2:
                    val.add(g)
                    break
    per_ds = items.groupby("dataset_id").size()
    ds_of = items.groupby(by)["dataset_id"].agg(lambda d: sorted(set(d)))
    in_val_ds = items[items[by].isin(val)].groupby("dataset_id").size().reindex(per_ds.index, fill_value=0)
    for g in ranked(set(comp) - val):  # no dataset goes past the upper end of the range on its own
        if share() >= lo:
            break
        mine = items.loc[items[by] == g].groupby("dataset_id").size()
        if share() + size[g] / n <= hi and all(in_val_ds[d] + mine[d] <= hi * per_ds[d] for d in ds_of[g]):
            val.add(g)
            in_val_ds = in_val_ds.add(mine, fill_value=0)
    needed = {(c, v) for c in covered for v in items.loc[items[by].isin(val), c].unique()}
    for g in reversed(ranked(val)):
        if share() <= hi:
            break
        rest = items[items[by].isin(val - {g})]
        if all(v in set(rest[c]) for c, v in needed):
            val.discard(g)
    return pd.Series(["val" if g in val else "test" for g in comp], index=items.index, dtype=object)


def reletter(items: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Re-place correct options after units were dropped, so each dataset's letters stay balanced per option count
    (twins alike). Per dataset, not per split: one dataset's letters never depend on another's, nor on which
    split a patient falls in."""
    from pipelines.candidates.assemble import (
        LETTERED,
        LETTERS,
        SCALE_GENERATORS,
        assign_letters,
    )
    out = items.copy()
    first = out.sort_values("unit_id").drop_duplicates("unit_id")  # twins carry the same options
    units = []
    cols = [c for c in ("unit_id", "dataset_id", "multi_answer", "answer", "option_origins", "generator", *LETTERS)
            if c in first]
    for r in first[cols].to_dict("records"):
        if r["multi_answer"] or r.get("generator") == "grounding":
            continue
        opts = [r[c] for c in LETTERS if isinstance(r[c], str)]
        correct = r[r["answer"]]
        origins = list(r["option_origins"]) if r.get("option_origins") is not None else []
        units.append({"unit_id": r["unit_id"], "dataset_id": r.get("dataset_id"), "multi": False,
                      "options": [correct] + [o for o in opts if o != correct],
                      "scale": r.get("generator") in SCALE_GENERATORS, "lettered": r.get("generator") in LETTERED,
                      "origin_of": dict(zip(opts, origins))})
    assign_letters(units, seed)
    placed = {u["unit_id"]: u for u in units}
    hit = out["unit_id"].isin(placed)
    uids = out.loc[hit, "unit_id"].tolist()
    for i, c in enumerate(LETTERS):
        out.loc[hit, c] = [(placed[u]["ordered"] + [None] * len(LETTERS))[i] for u in uids]
    out.loc[hit, "answer"] = [placed[u]["answer"] for u in uids]
    if "option_origins" in out:  # each option keeps its origin (dataset pool, fallback, generated count)
        out.loc[hit, "option_origins"] = pd.Series([[placed[u]["origin_of"].get(o, "dataset") for o in placed[u]["ordered"]]
                                                    for u in uids], index=out.index[hit], dtype=object)
    return out
