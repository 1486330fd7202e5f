"""Pixel measurements of one plane's ROIs: intensity inside vs a ring around, boundary, shape.

Every measurement works on a crop around the ROI's box (grown by the ring width), so the cost follows
the ROI's size, not the image's. ``values`` are what intensity is compared on (raw HU for CT, the raw
volume values for other 3D data, the 8-bit grey plane for 2D images); ``grey`` is the 8-bit display
plane the boundary gradient is measured on, so sharpness is comparable across modalities.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class Crop:
    y0: int
    y1: int
    x0: int
    x1: int

    def of(self, arr: np.ndarray) -> np.ndarray:
        return arr[self.y0:self.y1, self.x0:self.x1]


def crop_around(mask_bbox: tuple[int, int, int, int], pad: int, shape: tuple[int, int]) -> Crop:
    x0, y0, x1, y1 = mask_bbox
    return Crop(max(0, y0 - pad), min(shape[0], y1 + pad), max(0, x0 - pad), min(shape[1], x1 + pad))


def ring_width(area_px: float, fraction: float, lo: int, hi: int) -> int:
    return int(np.clip(round(fraction * np.sqrt(max(area_px, 1.0))), lo, hi))


def dilate(mask: np.ndarray, width: int) -> np.ndarray:
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * width + 1, 2 * width + 1))
    return cv2.dilate(mask.astype(np.uint8), k).astype(bool)


def ring_of(mask: np.ndarray, width: int) -> np.ndarray:
    """Pixels within ``width`` of the mask but outside it."""
    return dilate(mask, width) & ~mask


def contrast(values: np.ndarray, inside: np.ndarray, ring: np.ndarray, floor: float) -> dict:
    """Means and stds inside and in the ring, and their standardized difference d."""
    vin, vring = values[inside], values[ring]
    out = {"mean_in": float(vin.mean()) if vin.size else None, "std_in": float(vin.std()) if vin.size else None,
           "mean_ring": float(vring.mean()) if vring.size else None,
           "std_ring": float(vring.std()) if vring.size else None, "contrast_d": None}
    if vin.size and vring.size:
        pooled = max(float(np.sqrt((vin.var() + vring.var()) / 2)), floor)
        out["contrast_d"] = (out["mean_in"] - out["mean_ring"]) / pooled
    return out


def boundary_sharpness(grey: np.ndarray, mask: np.ndarray) -> float | None:
    """Mean Sobel gradient magnitude on the mask's boundary pixels, as a fraction of the largest possible."""
    edge = mask & ~cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    if not edge.any():
        return None
    g = grey.astype(np.float32)
    mag = np.hypot(cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3))
    return float(mag[edge].mean() / (4 * 255 * np.sqrt(2)))


def shape(mask: np.ndarray) -> tuple[float | None, float | None]:
    """(elongation = 1 - minor/major axis from second moments, solidity = pixels / convex-hull pixels)."""
    n = int(mask.sum())
    if n < 3:
        return None, None
    m = cv2.moments(mask.astype(np.uint8), binaryImage=True)
    a, b, c = m["mu20"] / n, m["mu11"] / n, m["mu02"] / n
    root = np.sqrt(((a - c) / 2) ** 2 + b ** 2)
    l1, l2 = (a + c) / 2 + root, max((a + c) / 2 - root, 0.0)
    elong = float(1 - np.sqrt(l2 / l1)) if l1 > 0 else 0.0
    ys, xs = np.nonzero(mask)
    hull = cv2.convexHull(np.stack([xs, ys], 1).astype(np.int32))
    filled = np.zeros(mask.shape, np.uint8)
    cv2.fillConvexPoly(filled, hull, 1)
    return round(elong, 4), round(min(1.0, n / max(int(filled.sum()), n)), 4)


def measure_roi(values: np.ndarray, grey: np.ndarray, mask: np.ndarray, bbox: tuple[int, int, int, int],
                ring_px: int, floor: float, outlined: bool = True) -> dict:
    """All pixel facts of one ROI (full-plane mask), computed on a crop around it; a box (``outlined`` False)
    gets no boundary or shape facts: its edges are not the structure's."""
    crop = crop_around(bbox, ring_px + 2, mask.shape)
    m = crop.of(mask)
    ring = ring_of(m, ring_px)
    out = contrast(crop.of(values), m, ring, floor)
    out["boundary_sharpness"] = boundary_sharpness(crop.of(grey), m) if outlined else None
    out["elongation"], out["solidity"] = shape(m) if outlined else (None, None)
    out["ring_px"] = ring_px
    return out


def is_colour(rgb: np.ndarray) -> bool:
    """Whether an 8-bit display plane holds colour (not three equal channels)."""
    return rgb.ndim == 3 and not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]))


def mean_colour(rgb: np.ndarray, mask: np.ndarray, bbox: tuple[int, int, int, int]) -> tuple[float, float, float] | None:
    """Mean (R, G, B) inside the mask of a colour plane."""
    crop = crop_around(bbox, 0, mask.shape)
    px = crop.of(rgb)[crop.of(mask)]
    return tuple(float(v) for v in px.reshape(-1, 3).mean(axis=0)) if px.size else None


def largest_filled(mask: np.ndarray) -> np.ndarray | None:
    """The largest 8-connected component of a mask with its holes filled (None if the mask is empty)."""
    n, lab, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n < 2:
        return None
    return ndimage.binary_fill_holes(lab == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA])))


def foreground(values: np.ndarray, grey: np.ndarray, family: str, unit: str) -> np.ndarray | None:
    """The imaged tissue of a plane, the container of a lesion no labelled organ holds: body (CT above
    -500 HU), tissue above a tenth of the bright end (MR, PET), the lit field of view of a photograph (grey above 20 of
    255, without the dark vignette or frame). None where a plane has no such outline (microscopy, radiographs):
    the whole field is tissue there and an image position already says where the ROI is."""
    if family == "ct" and unit == "HU":
        mask = values > -500
    elif family in ("mr", "pet"):  # background near 0 after the percentile clip; dark tissue (CSF, necrosis) stays in
        mask = grey > 0.1 * max(float(np.percentile(grey, 99)), 1.0)
    elif family == "photo":
        mask = grey > 20
    else:
        return None
    return largest_filled(mask)
