"""Copies of selected items that probe consistency: mirrored laterality items (the key side swapped) in the main
benchmark, and perturbed copies (noise, blur, contrast, down-up sampling at recorded severities) in the
`robustness` subset. A copy keeps its original's question, options, split and leakage component and points
back to it through ``variant_of``; only the image (and, for a mirror, the key) differs."""

from __future__ import annotations

import json

import pandas as pd

from pipelines.config import PipelineConfig
from pipelines.ids import stable_id, stable_ids
from pipelines.questions.assemble import LETTERS
from pipelines.questions.generators.phrasing import mirrored


def _copies(base: pd.DataFrame, tag: str) -> pd.DataFrame:
    out = base.copy()
    out["variant_of"] = base["item_id"].to_numpy()
    out["item_id"] = stable_ids(base["item_id"], [tag] * len(base))
    out["unit_id"] = stable_ids(base["unit_id"], [tag] * len(base))
    out["prompt_id"] = stable_ids(base["prompt_id"], [tag] * len(base))
    return out


def mirror_pairs(items: pd.DataFrame) -> pd.DataFrame:
    """One mirrored copy per laterality item: the image is flipped left-right, so under the stated display
    convention the structure now lies on the other side of the patient, and the key moves to that option."""
    lat = items[(items["generator"] == "laterality") & items["variant_of"].isna()]
    if lat.empty:
        return lat
    out = _copies(lat, "mirror")
    out["generator_params"] = [mirrored(p) for p in lat["generator_params"]]
    out["variant"] = json.dumps({"kind": "mirror"})
    keys = []
    for r in lat.to_dict("records"):
        other = "Right" if r[r["answer"]] == "Left" else "Left"
        keys.append(next(c for c in LETTERS if r[c] == other))
    out["answer"] = keys
    out["answer_label"] = ["patient's " + ("right" if a.endswith("left") else "left") for a in lat["answer_label"]]
    return out


def robustness_copies(items: pd.DataFrame, config: PipelineConfig) -> pd.DataFrame:
    """``robustness.base_items`` seeded test-split items x every kind x every severity."""
    r = config.robustness
    base = items[(items["split"] == "test") & items["variant_of"].isna()]
    if base.empty or r.base_items <= 0:
        return base.iloc[:0]
    order = sorted(base["item_id"], key=lambda i: stable_id(config.seed, "robustness", i))[: r.base_items]
    base = base.set_index("item_id", drop=False).loc[order]
    parts = []
    for kind in r.kinds:
        for severity in r.severities:
            part = _copies(base, f"{kind}:{severity}")
            part["variant"] = json.dumps({"kind": kind, "severity": severity}, sort_keys=True)
            part["subset"] = "robustness"
            parts.append(part)
    return pd.concat(parts, ignore_index=True)
