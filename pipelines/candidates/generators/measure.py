"""Measurement: how long or how large an outlined structure is, answered in non-overlapping bins of a fixed ladder.

Physical units only where the pixel size is known (from a header, a registry constant or a per-image table:
``slices.spacing_source``): the longest in-plane diameter in mm or the cross-sectional area in cm², and the stem
states the displayed pixel size so the answer can be read off the image. Where the size is unknown, the same
structure is asked in the image's own terms: its area as a share of the image, its longest diameter as a share
of the image's width; no unit is invented.

A structure touching the image border is not measured (its true extent is not on the image). Lengths come
from the shape: the largest distance between two points of the structure's convex hull (pixel
corners, anisotropic spacing respected), or, for a mask that was a closed outline (filled at describe time), the
major axis of the ellipse fitted to its boundary (a head circumference traced as an ellipse). Areas are the
region's pixels, which for an outline are the enclosed region. Computed from the stored mask for the sampled
planes only (pieces.py)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pandas as pd

from pipelines.candidates.generators.bins import bin_of, bin_text
from pipelines.candidates.generators.spec import Spec
from pipelines.config import GeneratorSettings

TASK = "Measurement"
PHYSICAL = ("diameter", "area")
RELATIVE = ("diameter_fraction", "area_fraction")


def pixel_corners_hull(mask: np.ndarray) -> np.ndarray:
    """The corners of the pixels on the convex hull of the mask's pixel centres (float32 x, y). The hull of every
    pixel's four corners is the hull of these (a Minkowski sum of the centres' hull and one pixel), so only the
    outer boundary is traced (OpenCV's contours) instead of listing four corners per pixel of a large organ."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    centres = cv2.convexHull(np.concatenate(contours)).reshape(-1, 2)
    return np.concatenate([centres + (dx, dy) for dx in (0, 1) for dy in (0, 1)]).astype(np.float32)


def feret_mm(mask: np.ndarray, sx: float, sy: float) -> float:
    """Longest distance (mm, or px with sx = sy = 1) across the mask, between outer pixel corners of its hull."""
    hull = cv2.convexHull(pixel_corners_hull(mask)).reshape(-1, 2).astype(np.float64) * np.array([sx, sy])
    d = hull[:, None, :] - hull[None, :, :]
    return float(math.sqrt((d ** 2).sum(-1).max()))


def ellipse_major(mask: np.ndarray, sx: float, sy: float) -> float:
    """Major axis (mm, or px) of the ellipse fitted (least squares, OpenCV) to the region's outer boundary, taken
    at pixel edges so a filled disc of diameter d measures d; falls back to the hull diameter when the boundary
    has fewer than 5 points."""
    contours, _ = cv2.findContours(np.pad(mask, 1).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    pts = max(contours, key=len).reshape(-1, 2).astype(np.float64) if contours else np.zeros((0, 2))
    if len(pts) < 5:
        return feret_mm(mask, sx, sy)
    v = pts - pts.mean(axis=0)  # boundary pixel centres, pushed half a pixel outwards: the pixel edges
    edge = pts + 0.5 * v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-9)
    (_, _), (a, b), _ = cv2.fitEllipse((edge * np.array([sx, sy])).astype(np.float32))
    return float(max(a, b))


def cut_by_edge(r: dict) -> bool:
    """The structure reaches the image border (a lesion running out of the dermoscope's field, an organ cut by
    the scan's field of view): its true extent is not on the image, so its size is not asked."""
    return r["x0"] <= 0 or r["y0"] <= 0 or r["x1"] >= r["width"] or r["y1"] >= r["height"]


def plane_specs(plane: list[dict], rng: np.random.Generator, g: GeneratorSettings, length: dict[str, float]) -> list[Spec]:
    """At most ``per_plane`` measurement units of one plane; ``length``: region id -> longest length (mm where the
    plane's pixel size is known, else px)."""
    rows = [r for r in plane if r["region_id"] in length and not cut_by_edge(r)]
    out = []
    for j in rng.permutation(len(rows))[: g.per_plane]:
        r = rows[j]
        known = pd.notna(r["sx"]) and pd.notna(r["sy"])
        quantity = (PHYSICAL if known else RELATIVE)[int(rng.integers(2))]
        if quantity == "diameter":
            value, ladder, unit = length[r["region_id"]], list(g.diameter_ladder_mm), "mm"
        elif quantity == "area":
            value, ladder, unit = float(r["area_mm2"]) / 100.0, list(g.area_ladder_cm2), "cm²"
        elif quantity == "diameter_fraction":
            value, ladder, unit = 100.0 * length[r["region_id"]] / float(r["width"]), list(g.length_fraction_ladder_pct), "%"
        else:
            value = 100.0 * float(r["area_px"]) / (float(r["width"]) * float(r["height"]))
            ladder, unit = list(g.area_fraction_ladder_pct), "%"
        b = bin_of(value, ladder, g.bin_margin)
        if b is None:
            continue
        text = bin_text(b, ladder, unit)
        colour = str(rng.permutation(list(g.palette))[0])
        params = {"quantity": quantity, "value": round(value, 3), "unit": unit, "bin": b,
                  "spacing_source": r.get("spacing_source") or ("header" if known else "unknown"),
                  "length_method": "ellipse_fit" if r.get("outline_filled") else "convex_hull",
                  "outline_filled": bool(r.get("outline_filled"))}
        if known:
            params["display_mm_per_px"] = round(float(r["display_mm"]), 6)
        out.append(Spec("measurement", TASK, r["image_id"], [r], [colour], [text], f"{quantity} {text}",
                        r["department"], r["semantic_type"], params,
                        balance_group=f"measurement:{quantity}"))  # bins equally often: no typical size to bet on
    return out


def ladder_for(quantity: str, g: GeneratorSettings) -> tuple[list[float], str]:
    """The bins and unit a measurement quantity is answered in."""
    return {"diameter": (list(g.diameter_ladder_mm), "mm"), "area": (list(g.area_ladder_cm2), "cm²"),
            "diameter_fraction": (list(g.length_fraction_ladder_pct), "%"),
            "area_fraction": (list(g.area_fraction_ladder_pct), "%")}[quantity]
