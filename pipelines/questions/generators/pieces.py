"""What a reader sees on a plane, from the stored masks of a bounded set of sampled planes: how many separate
pieces each region shows in 2D (a 3D instance can cross a plane more than once), the longest diameter of
single-piece regions, and how many separate cross-sections each counted structure shows (the union of its raw
labels, so touching pieces count once, as they look). One plane's masks are held at a time."""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
import pandas as pd

from pipelines.config import PipelineConfig
from pipelines.questions.generators.measure import feret_mm
from pipelines.standardize.regions import decode_rle


@dataclass
class PlaneFacts:
    pieces: dict[str, int] = field(default_factory=dict)  # region id -> 2D connected pieces
    feret: dict[str, float] = field(default_factory=dict)  # single-piece region id -> longest diameter (mm)
    counts: dict[tuple[str, str], tuple[int, bool, list[str]]] = field(default_factory=dict)
    # (image id, canonical) -> (cross-sections, any of them too small to see, region ids)


def _components(mask: np.ndarray) -> np.ndarray:
    """Pixel areas of the 8-connected pieces of a mask."""
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    return stats[1:n, cv2.CC_STAT_AREA]


def plane_facts(regions: pd.DataFrame, planes: pd.DataFrame, rle: dict[str, str], canonical: dict[str, str],
                exhaustive: frozenset[str], measure_planes: set[str], config: PipelineConfig) -> PlaneFacts:
    """Facts of the given mask regions (all on sampled planes); ``planes`` is plane_frame's table."""
    g, facts = config.gates, PlaneFacts()
    geo = planes.set_index("image_id")
    for image_id, part in regions.groupby("image_id", sort=True):
        p = geo.loc[image_id]
        h, w = int(p["height"]), int(p["width"])
        masks = {rid: decode_rle(rle[rid], h, w) for rid in part["region_id"] if rid in rle}
        for rid, m in masks.items():
            facts.pieces[rid] = len(_components(m))
            if facts.pieces[rid] == 1 and image_id in measure_planes and np.isfinite(p["sx"]):
                facts.feret[rid] = feret_mm(m, float(p["sx"]), float(p["sy"]))
        counted = part[part["raw_label"].isin(exhaustive) & part["raw_label"].isin(canonical)]
        for canon, group in counted.groupby(counted["raw_label"].map(canonical), sort=True):
            union = np.zeros((h, w), bool)
            for rid in group["region_id"]:
                if rid in masks:
                    union |= masks[rid]
            areas = _components(union) * float(p["scale"]) * float(p["scale_y"])
            hidden = bool(((areas < g.min_mark_pixels) | (areas < g.min_mark_fraction * p["display_width"]
                                                             * p["display_height"])).any())
            facts.counts[(image_id, canon)] = (len(areas), hidden, sorted(group["region_id"]))
    return facts
