"""Drawing visual prompts: the mark a question shows, at each perceptual granularity a region supports.

* image regions (classification) -> ``image``: the slice itself, no overlay
* box regions (detection)        -> ``box``: an opaque rectangle ring just outside the box
* mask regions (segmentation)    -> ``mask`` (alpha fill exactly on the mask pixels) and
  ``contour`` (an opaque ring just outside the mask boundary); the two are twins.

Lines sit outside the region so the structure's own edge stays visible. Thickness scales with
the image (``line_fraction`` of the shorter side, at least ``min_thickness``). A single mark's colour is
chosen per image from ``render.mark_palette``: the first colour whose WCAG contrast ratio against the
pixels under and around the mark reaches ``min_contrast`` (a red outline on pink skin would not), and the
choice and its contrast are recorded. Everything is drawn on the display image (square pixels, bounded size),
so line widths are what the reader sees.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from pipelines.config import RenderSettings


def thickness(width: int, height: int, s: RenderSettings) -> int:
    return max(s.min_thickness, int(round(s.line_fraction * min(width, height))))


def _linear(c: np.ndarray) -> np.ndarray:
    """sRGB channel values in 0..1 to linear light (WCAG)."""
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


_LINEAR_8BIT = _linear(np.arange(256, dtype=np.float64) / 255.0)  # the same values for every 8-bit level, once


def luminance(rgb: np.ndarray) -> np.ndarray:
    """WCAG relative luminance of sRGB pixels (..., 3) in 0..1 (8-bit pixels through a 256-entry table: the
    same numbers as the formula, without a power per pixel)."""
    rgb = np.asarray(rgb)
    lin = _LINEAR_8BIT[rgb] if rgb.dtype == np.uint8 else _linear(np.asarray(rgb, np.float64) / 255.0)
    return lin @ np.array([0.2126, 0.7152, 0.0722])


@lru_cache(maxsize=256)
def colour_luminance(colour: tuple[int, int, int]) -> float:
    """:func:`luminance` of one colour, kept: every item weighs the same palette colours against its background."""
    return float(luminance(np.array(colour)))


def contrast(l1: float, l2: float) -> float:
    """WCAG contrast ratio of two relative luminances (1 to 21)."""
    hi, lo = max(l1, l2), min(l1, l2)
    return (hi + 0.05) / (lo + 0.05)


def grow(where: np.ndarray, t: int) -> np.ndarray:
    """``where`` grown by t px (chessboard distance)."""
    return cv2.dilate(where.astype(np.uint8), np.ones((2 * t + 1, 2 * t + 1), np.uint8)) > 0


def bounds(where: np.ndarray) -> tuple[slice, slice] | None:
    """The rows and columns holding every True pixel of ``where`` (None when there is none): a mark is small
    beside its image, so work on its pixels is done inside this box (the same pixels, in the same order)."""
    x, y, w, h = cv2.boundingRect(np.ascontiguousarray(where).view(np.uint8))
    return (slice(y, y + h), slice(x, x + w)) if w and h else None


def background(rgb: np.ndarray, zone: np.ndarray) -> float:
    """Mean relative luminance of the unmarked image's pixels in ``zone`` (the whole image if empty)."""
    box = bounds(zone)
    return float(luminance(rgb[box][zone[box]] if box else rgb.reshape(-1, 3)).mean())


def pick_colour(bg: float, s: RenderSettings) -> tuple[str, tuple[int, int, int], float]:
    """(name, colour, contrast): the first palette colour reaching min_contrast against ``bg``, else the best."""
    scored = [(name, tuple(c), contrast(colour_luminance(tuple(int(v) for v in c)), bg))
              for name, c in s.mark_palette.items()]
    ok = [x for x in scored if x[2] >= s.min_contrast]
    return ok[0] if ok else max(scored, key=lambda x: x[2])


def draw_mask(rgb: np.ndarray, mask: np.ndarray, color, alpha: float) -> np.ndarray:
    out = rgb.copy()
    box = bounds(mask)
    if box:
        blend = rgb[box][mask[box]].astype(np.float64) * (1 - alpha) + np.array(color, np.float64) * alpha
        out[box][mask[box]] = np.clip(np.rint(blend), 0, 255).astype(np.uint8)
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
    """Pixels exactly of a prompt colour (lines are drawn opaque), the pixels packed as 24-bit integers, whatever
    the number of colours. When no prompt colour is grey, only the pixels whose channels differ can match: on a
    grey slice those are the marks, so only they are packed and looked up."""
    if rgb.ndim != 3 or not colours:
        return 0
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    if all(not (c[0] == c[1] == c[2]) for c in colours):
        coloured = (r != g) | (g != b)
        r, g, b = r[coloured], g[coloured], b[coloured]
    packed = (r.astype(np.uint32) << 16) | (g.astype(np.uint32) << 8) | b
    wanted = np.unique([(c[0] << 16) | (c[1] << 8) | c[2] for c in colours]).astype(np.uint32)
    return int(np.isin(packed, wanted).sum())


def paint(rgb: np.ndarray, where: np.ndarray, color) -> np.ndarray:
    out = rgb.copy()
    box = bounds(where)
    if box:
        out[box][where[box]] = color
    return out


def draw_prompt(rgb: np.ndarray, granularity: str, s: RenderSettings, mask: np.ndarray | None = None,
                bbox: list[float] | None = None) -> tuple[np.ndarray, dict]:
    """The marked image and the parameters that reproduce it ('image' items are returned as they are)."""
    if granularity == "image":
        return rgb, {}
    h, w = rgb.shape[:2]
    if bbox is None:
        box = bounds(mask)
        if box is None:
            raise ValueError("nothing to mark: the mask is empty at display size")
        rows, cols = box
        bbox = [float(cols.start), float(rows.start), float(cols.stop), float(rows.stop)]
    t = thickness(w, h, s)
    if granularity == "mask":
        drawn = mask
    elif granularity == "contour":
        drawn = contour_ring(mask, t)
    elif granularity == "box":
        drawn = box_ring((h, w), bbox, t)
    else:
        raise ValueError(f"unknown granularity {granularity!r}")
    # what the reader sees the colour against: a band of the line's width on both sides of a line; under and
    # around an alpha fill (the tint shows over the structure)
    bg = background(rgb, grow(drawn, t) if granularity == "mask" else grow(drawn, t) & ~drawn)
    name, color, ratio = pick_colour(bg, s)
    params = {"color": list(color), "color_name": name, "contrast": round(ratio, 3), "background_luminance": round(bg, 4)}
    if granularity == "mask":
        return draw_mask(rgb, mask, color, s.alpha), {**params, "alpha": s.alpha}
    return paint(rgb, drawn, color), {**params, "thickness": t}


def draw_outlines(rgb: np.ndarray, marks: list[tuple[np.ndarray, tuple]], s: RenderSettings) -> tuple[np.ndarray, dict]:
    """Several structures, each outlined in its own named colour (generated questions refer to them by colour, so
    the colour is fixed). Rings are drawn largest structure first, so a small structure's outline is never covered
    by a large one's. A ring whose colour falls below min_contrast against its local background (other outlines left
    out) gets a 1-px halo on its outer side, black or white, whichever keeps both the colour and the background
    furthest from it (``render.halo``)."""
    h, w = rgb.shape[:2]
    t = thickness(w, h, s)
    out = rgb
    rings = [contour_ring(mask, t) for mask, _ in marks]
    order = sorted(range(len(marks)), key=lambda k: -int(marks[k][0].sum()))
    seen = [r.copy() for r in rings]  # what stays of each ring once the later (smaller) ones are drawn over it
    for pos, k in enumerate(order):
        for later in order[pos + 1:]:
            seen[k] &= ~rings[later]
    info = []
    for i, (ring, (_, color)) in enumerate(zip(seen, marks)):  # in the order the stem names them
        others = np.zeros(ring.shape, bool)  # other outlines (and their halos) drawn beside this one
        for j, o in enumerate(seen):
            if j != i:
                others |= grow(o, 1)
        bg = background(rgb, grow(ring, t) & ~ring & ~others)
        lum = colour_luminance(tuple(int(v) for v in color))
        ratio = contrast(lum, bg)
        halo = None
        if s.halo and ratio < s.min_contrast:  # black or white: whichever separates the colour and what lies beyond
            beyond = background(rgb, grow(ring, t + 1) & ~grow(ring, 1) & ~others)
            halo = max(((0, 0, 0), (255, 255, 255)),
                       key=lambda h: min(contrast(float(h[0] == 255), beyond), contrast(float(h[0] == 255), lum)))
        info.append({"contrast": round(ratio, 3), "background_luminance": round(bg, 4),
                     "halo": list(halo) if halo else None})
    any_ring = np.logical_or.reduce(rings) if rings else np.zeros((h, w), bool)
    for i in order:
        mask, color = marks[i]
        if info[i]["halo"]:  # never over an outline: a halo separates, it does not hide
            out = paint(out, grow(seen[i], 1) & ~any_ring & ~mask, tuple(info[i]["halo"]))
        out = paint(out, rings[i], color)
    return out, {"colors": [list(c) for _, c in marks], "thickness": t, "marks": info}
