"""Copies of selected items that probe consistency and robustness, each in its own export config.

* ``consistency``: every laterality item twice, as shown in the main config and mirrored left to right. The
  mirrored copy's stem says the image was mirrored, so its key (the patient's side) stays the original's; a
  reader is consistent when both copies of a pair are right. No main item ever shows a mirrored image.
* ``robustness``: perturbed copies (noise, blur, contrast, down-up sampling at recorded severities) of a seeded
  share of the test items.

A copy keeps its original's options, split and leakage component and points back to it through ``variant_of``;
only the image (and, for a mirrored copy, the stated display convention) differs.
"""

from __future__ import annotations

import json

import pandas as pd

from pipelines.candidates.generators.phrasing import flipped
from pipelines.config import PipelineConfig
from pipelines.ids import stable_id, stable_ids, unit_interval


def _copies(base: pd.DataFrame, tag: str, subset: str) -> pd.DataFrame:
    out = base.copy()
    out["variant_of"] = base["item_id"].to_numpy()
    out["item_id"] = stable_ids(base["item_id"], [tag] * len(base))
    out["unit_id"] = stable_ids(base["unit_id"], [tag] * len(base))
    out["prompt_id"] = stable_ids(base["prompt_id"], [tag] * len(base))
    out["subset"] = subset
    return out


def consistency_pairs(items: pd.DataFrame) -> pd.DataFrame:
    """Two copies of every main laterality item: as displayed, and mirrored with a stem that says so."""
    lat = items[(items["generator"] == "laterality") & items["variant_of"].isna() & (items["subset"] == "main")]
    if lat.empty:
        return lat.iloc[:0]
    same = _copies(lat, "consistency:as-shown", "consistency")
    same["variant"] = json.dumps({"kind": "as_shown"})
    mirror = _copies(lat, "consistency:mirrored", "consistency")
    changed = [flipped(p, q) for p, q in zip(lat["generator_params"], lat["question"])]
    mirror["generator_params"] = [p for p, _ in changed]
    mirror["question"] = [q for _, q in changed]
    mirror["variant"] = json.dumps({"kind": "mirror"})
    return pd.concat([same, mirror], ignore_index=True)


def robustness_copies(items: pd.DataFrame, config: PipelineConfig) -> pd.DataFrame:
    """Every kind x severity of the test items whose seeded hash falls under ``robustness.fraction`` (at most
    ``robustness.max_items`` of them, the lowest hashes). Chosen item by item, so one dataset's copies do not
    depend on the others."""
    r = config.robustness
    base = items[(items["split"] == "test") & items["variant_of"].isna() & (items["subset"] == "main")]
    if base.empty or r.fraction <= 0 or r.max_items <= 0:
        return base.iloc[:0]
    draw = pd.Series(unit_interval(config.seed, "robustness", base["item_id"]), index=base.index)
    base = base[draw < r.fraction]
    base = base.loc[draw[base.index].sort_values(kind="stable").index[: r.max_items]]
    base = base.sort_values("item_id")
    parts = []
    for kind in r.kinds:
        for severity in r.severities:
            part = _copies(base, f"{kind}:{severity}", "robustness")
            part["variant"] = json.dumps({"kind": kind, "severity": severity}, sort_keys=True)
            parts.append(part)
    return pd.concat(parts, ignore_index=True) if parts else base.iloc[:0]


def pair_key(item_id: str, variant_of: str | None) -> str:
    """The id a consistency pair shares: its main item's."""
    return variant_of if isinstance(variant_of, str) else stable_id("pair", item_id)
