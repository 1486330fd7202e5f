"""Drawing visual prompts: the mark a question shows, at each perceptual granularity a region supports.

* image regions (classification) -> ``image``: the slice itself, no overlay
* box regions (detection)        -> ``box``: an opaque rectangle ring just outside the box
* mask regions (segmentation)    -> ``mask`` (alpha fill exactly on the mask pixels) and
  ``contour`` (an opaque ring just outside the mask boundary); the two are twins.

Lines sit outside the region so the structure's own edge stays visible. Thickness scales with
the image (``line_fraction`` of the shorter side, at least ``min_thickness``). When a region's
surroundings are red (endoscopy, dermoscopy, histopathology) the alternative colour is used,
and the choice is recorded. Everything is drawn on the display image (square pixels, bounded size),
so line widths are what the reader sees.
"""

from __future__ import annotations

import cv2
import numpy as np

from pipelines.config import RenderSettings


def thickness(width: int, height: int, s: RenderSettings) -> int:
    return max(s.min_thickness, int(round(s.line_fraction * min(width, height))))


def surroundings_are_red(rgb: np.ndarray, bbox: list[float], t: int, s: RenderSettings) -> bool:
    """Mean colour of a ring around the region's box (twice the line width, at least 4 px)."""
    h, w = rgb.shape[:2]
    pad = max(4, 2 * t)
    x0, y0, x1, y1 = (int(v) for v in bbox)
    outer = np.zeros((h, w), bool)
    outer[max(0, y0 - pad):min(h, y1 + pad), max(0, x0 - pad):min(w, x1 + pad)] = True
    outer[y0:y1, x0:x1] = False
    if not outer.any():
        outer[:] = True
    r, g, b = (rgb[..., c][outer].mean() for c in range(3))
    return bool(r > s.red_surroundings_ratio * max(g, b, 1.0))


def draw_mask(rgb: np.ndarray, mask: np.ndarray, color, alpha: float) -> np.ndarray:
    out = rgb.copy()
    blend = rgb[mask].astype(np.float64) * (1 - alpha) + np.array(color, np.float64) * alpha
    out[mask] = np.clip(np.rint(blend), 0, 255).astype(np.uint8)
    return out


def contour_ring(mask: np.ndarray, t: int) -> np.ndarray:
    """Pixels within t (chessboard distance) outside the mask: the drawn outline."""
    grown = cv2.dilate(mask.astype(np.uint8), np.ones((2 * t + 1, 2 * t + 1), np.uint8)) > 0
    return grown & ~mask


def box_ring(shape: tuple[int, int], bbox: list[float], t: int) -> np.ndarray:
    h, w = shape
    x0, y0, x1, y1 = (int(round(v)) for v in bbox)
    ring = np.zeros((h, w), bool)
    ring[max(0, y0 - t):min(h, y1 + t), max(0, x0 - t):min(w, x1 + t)] = True
    ring[max(0, y0):min(h, y1), max(0, x0):min(w, x1)] = False
    return ring


def mark_pixels(rgb: np.ndarray, colours: list[tuple[int, int, int]]) -> int:
    """Pixels exactly of a prompt colour (lines are drawn opaque): one pass over the pixels packed as 24-bit
    integers, whatever the number of colours."""
    if rgb.ndim != 3 or not colours:
        return 0
    packed = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) | rgb[..., 2]
    wanted = np.unique([(r << 16) | (g << 8) | b for r, g, b in colours]).astype(np.uint32)
    return int(np.isin(packed, wanted).sum())


def paint(rgb: np.ndarray, where: np.ndarray, color) -> np.ndarray:
    out = rgb.copy()
    out[where] = color
    return out


def draw_prompt(rgb: np.ndarray, granularity: str, s: RenderSettings, mask: np.ndarray | None = None,
                bbox: list[float] | None = None) -> tuple[np.ndarray, dict]:
    """The marked image and the parameters that reproduce it ('image' items are returned as they are)."""
    if granularity == "image":
        return rgb, {}
    h, w = rgb.shape[:2]
    if bbox is None:
        ys, xs = np.nonzero(mask)
        bbox = [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]
    t = thickness(w, h, s)
    red = surroundings_are_red(rgb, bbox, t, s)
    color = tuple(s.alt_color if red else s.color)
    if granularity == "mask":
        return draw_mask(rgb, mask, color, s.alpha), {"color": list(color), "red_surroundings": red, "alpha": s.alpha}
    params = {"color": list(color), "red_surroundings": red, "thickness": t}
    if granularity == "contour":
        return paint(rgb, contour_ring(mask, t), color), params
    if granularity == "box":
        return paint(rgb, box_ring((h, w), bbox, t), color), params
    raise ValueError(f"unknown granularity {granularity!r}")


def draw_outlines(rgb: np.ndarray, marks: list[tuple[np.ndarray, tuple]], s: RenderSettings) -> tuple[np.ndarray, dict]:
    """Several structures, each outlined in its own named colour (generated questions refer to them by colour).
    Rings are drawn largest structure first, so a small structure's outline is never covered by a large one's."""
    h, w = rgb.shape[:2]
    t = thickness(w, h, s)
    out = rgb
    for mask, color in sorted(marks, key=lambda mc: -int(mc[0].sum())):
        out = paint(out, contour_ring(mask, t), color)
    return out, {"colors": [list(c) for _, c in marks], "thickness": t}
