"""val/test split disjoint by group (patient, volume or source image); twins share a group."""

from __future__ import annotations

import pandas as pd

from pipelines.ids import stable_id


def assign_splits(items: pd.DataFrame, val_fraction: float, seed: int, by: str = "group_id") -> pd.Series:
    """Split per dataset: groups (``by``: a group or leakage-component column) in seeded-hash order go to
    val until its share of the dataset's items reaches ``val_fraction`` (a group that would overshoot the
    share by more than half its size is skipped, so a one-group dataset goes to test); a dataset with two or more
    groups gets at least one in each split. A component that spans datasets is decided once, by the
    first dataset (in id order) holding it, and counts towards the others' shares as it fell."""
    split = pd.Series("test", index=items.index, dtype=object)
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
        split[part.index[part[by].isin(val_groups)]] = "val"
    return split


def reletter(items: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Re-place correct options after selection so each split's letters stay balanced (twins alike)."""
    from pipelines.questions.assemble import LETTERS, SCALE_GENERATORS, assign_letters
    out = items.copy()
    placed: dict[str, dict] = {}
    first = out.sort_values("unit_id").drop_duplicates("unit_id")  # twins carry the same options
    for split, part in first.groupby("split"):
        units = []
        cols = [c for c in ("unit_id", "multi_answer", "answer", "option_origins", "generator", *LETTERS) if c in part]
        for r in part[cols].to_dict("records"):
            if r["multi_answer"]:
                continue
            opts = [r[c] for c in LETTERS if isinstance(r[c], str)]
            correct = r[r["answer"]]
            origins = list(r["option_origins"]) if r.get("option_origins") is not None else []
            units.append({"unit_id": f"{split}:{r['unit_id']}", "uid": r["unit_id"], "multi": False,
                          "options": [correct] + [o for o in opts if o != correct],
                          "scale": r.get("generator") in SCALE_GENERATORS,
                          "origin_of": dict(zip(opts, origins))})
        assign_letters(units, seed)
        placed.update({u["uid"]: u for u in units})
    hit = out["unit_id"].isin(placed)
    uids = out.loc[hit, "unit_id"].tolist()
    for i, c in enumerate(LETTERS):
        out.loc[hit, c] = [(placed[u]["ordered"] + [None] * len(LETTERS))[i] for u in uids]
    out.loc[hit, "answer"] = [placed[u]["answer"] for u in uids]
    if "option_origins" in out:  # each option keeps its origin (dataset pool, fallback, generated count)
        out.loc[hit, "option_origins"] = pd.Series([[placed[u]["origin_of"].get(o, "dataset") for o in placed[u]["ordered"]]
                                                    for u in uids], index=out.index[hit], dtype=object)
    return out
