"""The structures a geometric question can mark: one row per (plane, raw label) drawn as one connected
component, with its label's tags, physical size and display geometry. Rows only; no pixels."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from pipelines.config import PipelineConfig
from pipelines.ids import stable_ids

SIDE_WORDS = {"left": "left", "right": "right", "l": "left", "r": "right"}


def label_side(raw_label: str, laterality: object) -> str | None:
    """'left'/'right' from the vocabulary, else from a side token in the raw label ('femur_left')."""
    if isinstance(laterality, str) and laterality in ("left", "right"):
        return laterality
    tokens = raw_label.lower().replace("-", "_").replace(" ", "_").split("_")
    sides = {SIDE_WORDS[t] for t in tokens if t in ("left", "right")}
    return sides.pop() if len(sides) == 1 else None


def plane_frame(slices: pd.DataFrame) -> pd.DataFrame:
    """Per image: geometry the generators need (display scale, physical pixel size, orientation)."""
    s = slices[["image_id", "sample_id", "axis", "index", "orientation", "spacing", "width", "height",
                "display_width", "display_height"]].copy()
    s["spacing_source"] = slices["spacing_source"] if "spacing_source" in slices else None
    params = slices["intensity_params"] if "intensity_params" in slices else pd.Series("", index=slices.index)
    windows = {p: json.loads(p).get("window", "") if isinstance(p, str) and p.startswith("{") else ""
               for p in set(params.tolist())}  # a handful of distinct settings per dataset: parse each once
    s["window"] = params.map(windows).fillna("").to_numpy(object) if len(params) else []
    s["scale"] = s["display_width"] / s["width"]  # display px per stored px along columns
    s["scale_y"] = s["display_height"] / s["height"]  # and along rows (differs when pixels were not square)
    sx = [float(v[0]) if v is not None and len(v) == 2 else np.nan for v in s["spacing"]]
    sy = [float(v[1]) if v is not None and len(v) == 2 else np.nan for v in s["spacing"]]
    s["sx"], s["sy"] = sx, sy
    s["display_mm"] = s["sx"] * s["width"] / s["display_width"]  # mm per display pixel (square)
    return s.drop(columns="spacing")


def structures(regions: pd.DataFrame, planes: pd.DataFrame, vocab: pd.DataFrame, config: PipelineConfig,
               pieces: dict[str, int]) -> pd.DataFrame:
    """Tagged, visible mask structures drawn as one piece on their plane (``pieces``: 2D pieces per region, known
    for the sampled planes only; ``planes``: plane_frame's table), one row each: what every generator may mark."""
    cols = ["region_id", "image_id", "raw_label", "x0", "y0", "x1", "y1", "cx", "cy", "area_px", "outline_filled"]
    m = regions[regions["kind"] == "mask"]
    alone = m.groupby(["image_id", "raw_label"])["region_id"].transform("size") == 1  # one instance of the label
    m = m[alone & (m["region_id"].map(pieces) == 1)]  # ... drawn as one piece
    if m.empty:
        return pd.DataFrame(columns=cols)
    bbox = np.array(m["bbox"].tolist(), float).reshape(-1, 4)
    cen = np.array(m["centroid"].tolist(), float).reshape(-1, 2)
    filled = m["outline_filled"].fillna(False).astype(bool) if "outline_filled" in m else False
    df = m[["region_id", "image_id", "raw_label", "area_px"]].assign(
        x0=bbox[:, 0], y0=bbox[:, 1], x1=bbox[:, 2], y1=bbox[:, 3], cx=cen[:, 0], cy=cen[:, 1], outline_filled=filled)
    v = vocab[vocab["status"].isin(["mesh", "no_mesh", "accepted"])]
    v = v[v["department"].notna() & (v["department"] != "N/A")]
    df = df.merge(v[["raw_label", "canonical_label", "laterality", "department", "semantic_type"]], on="raw_label")
    df = df.merge(planes, on="image_id")
    g = config.gates
    disp_px = df["area_px"] * df["scale"] * df["scale_y"]
    side = np.minimum((df["x1"] - df["x0"]) * df["scale"], (df["y1"] - df["y0"]) * df["scale_y"])
    visible = (disp_px >= g.min_mark_pixels) & (disp_px >= g.min_mark_fraction * df["display_width"] * df["display_height"]) \
        & (side >= g.min_mark_side)
    df = df[visible].copy()
    df["side"] = [label_side(r, lat) for r, lat in zip(df["raw_label"], df["laterality"])]
    df["area_mm2"] = df["area_px"] * df["sx"] * df["sy"]
    return df.sort_values(["image_id", "raw_label"], kind="stable").reset_index(drop=True)


def sampled_planes(image_ids, seed: int, name: str, limit: int) -> list[str]:
    """At most ``limit`` planes per dataset and generator, in a seeded order independent of row order:
    a generator's cost stays bounded however large the dataset is (selection keeps <= 30 per answer)."""
    ids = sorted(set(image_ids))
    keys = stable_ids([seed] * len(ids), [name] * len(ids), ids)
    return [i for _, i in sorted(zip(keys, ids))][:limit]
