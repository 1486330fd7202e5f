"""Measurement: the longest in-plane diameter (mm) or the cross-sectional area (cm²) of an outlined structure,
answered in non-overlapping bins of a fixed ladder. Only planes with a known pixel spacing; the stem states
the displayed pixel size, so the answer can be read off the image. The diameter is the largest distance
between two points of the structure's convex hull in millimetres (anisotropic spacing respected), computed
from the stored mask for the sampled planes only (pieces.py)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pandas as pd

from pipelines.config import GeneratorSettings
from pipelines.questions.generators.bins import bin_of, bin_text
from pipelines.questions.generators.spec import Spec

TASK = "Measurement"


def feret_mm(mask: np.ndarray, sx: float, sy: float) -> float:
    """Longest distance (mm) across the mask, between outer pixel corners of its convex hull."""
    ys, xs = np.nonzero(mask)
    corners = np.concatenate([np.stack([xs + dx, ys + dy], 1) for dx in (0, 1) for dy in (0, 1)]).astype(np.float32)
    hull = cv2.convexHull(corners).reshape(-1, 2).astype(np.float64) * np.array([sx, sy])
    d = hull[:, None, :] - hull[None, :, :]
    return float(math.sqrt((d ** 2).sum(-1).max()))


def plane_specs(plane: list[dict], rng: np.random.Generator, g: GeneratorSettings, feret: dict[str, float]) -> list[Spec]:
    rows = [r for r in plane if pd.notna(r["sx"]) and pd.notna(r["sy"]) and r["region_id"] in feret]
    out = []
    for j in rng.permutation(len(rows))[: g.per_plane]:
        r = rows[j]
        quantity = ("diameter", "area")[int(rng.integers(2))]
        if quantity == "diameter":
            value = feret[r["region_id"]]
            ladder, unit = list(g.diameter_ladder_mm), "mm"
        else:
            value, ladder, unit = float(r["area_mm2"]) / 100.0, list(g.area_ladder_cm2), "cm²"
        b = bin_of(value, ladder, g.bin_margin)
        if b is None:
            continue
        text = bin_text(b, ladder, unit)
        colour = str(rng.permutation(list(g.palette))[0])
        out.append(Spec("measurement", TASK, r["image_id"], [r], [colour], [text], f"{quantity} {text}",
                        r["department"], r["semantic_type"],
                        {"quantity": quantity, "value": round(value, 3), "unit": unit, "bin": b,
                         "display_mm_per_px": round(float(r["display_mm"]), 4)},
                        balance_group=f"measurement:{quantity}"))  # bins equally often: no typical size to bet on
    return out
