"""Display geometry: the stored plane as a reader sees it (square pixels, bounded size), and its pHash.

A plane with 0.98 x 2.0 mm pixels shown pixel for pixel is squashed twofold, and a 4032-px X-ray
is 40 MB of TSV for one item. Describe and render both call :func:`display_size`, so the gates
judge exactly the image that is later written.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image


@dataclass(frozen=True)
class DisplayGeometry:
    width: int
    height: int
    scale_x: float  # display px per stored px, along columns
    scale_y: float  # ... along rows

    def box(self, bbox: list[float]) -> list[float]:
        x0, y0, x1, y1 = bbox
        return [x0 * self.scale_x, y0 * self.scale_y, x1 * self.scale_x, y1 * self.scale_y]


def display_size(width: int, height: int, spacing: list[float] | tuple[float, float] | None,
                 max_side: int) -> DisplayGeometry:
    """Resample the coarser pixel axis to the finer spacing, then fit the longer side into ``max_side``."""
    ok = spacing is not None and len(spacing) >= 2 and min(float(spacing[0]), float(spacing[1])) > 0
    sx, sy = (float(spacing[0]), float(spacing[1])) if ok else (1.0, 1.0)
    fine = min(sx, sy)
    w, h = width * sx / fine, height * sy / fine
    shrink = min(1.0, max_side / max(w, h))
    dw, dh = max(1, int(round(w * shrink))), max(1, int(round(h * shrink)))
    return DisplayGeometry(dw, dh, dw / width, dh / height)


def _interpolation(geo: DisplayGeometry) -> int:
    return cv2.INTER_AREA if geo.scale_x <= 1 and geo.scale_y <= 1 else cv2.INTER_LINEAR


def to_display(rgb: np.ndarray, geo: DisplayGeometry) -> np.ndarray:
    """The stored 8-bit plane at display geometry (area interpolation when shrinking, linear when growing)."""
    if (rgb.shape[1], rgb.shape[0]) == (geo.width, geo.height):
        return rgb
    return np.ascontiguousarray(cv2.resize(rgb, (geo.width, geo.height), interpolation=_interpolation(geo)))


def mask_to_display(mask: np.ndarray, geo: DisplayGeometry) -> np.ndarray:
    """A boolean mask resampled like its image; a pixel is in when at least half of it is covered."""
    if (mask.shape[1], mask.shape[0]) == (geo.width, geo.height):
        return mask
    resized = cv2.resize(mask.astype(np.float32), (geo.width, geo.height), interpolation=_interpolation(geo))
    return resized >= 0.5


def grey(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if rgb.ndim == 3 else rgb


def _dct_rows(n: int = 32, keep: int = 8) -> np.ndarray:
    """The first ``keep`` rows of the unnormalized DCT-II matrix (scipy.fftpack.dct's default)."""
    k, i = np.arange(keep)[:, None], np.arange(n)[None, :]
    return 2.0 * np.cos(np.pi * k * (2 * i + 1) / (2 * n))


_DCT8 = _dct_rows()


def phash_hex(pixels: np.ndarray) -> str:
    """64-bit perceptual hash of an 8-bit plane, grey or RGB, as 16 hex digits: ImageHash's DCT pHash
    (same resize, same low-frequency block and median rule), with the 8 x 8 block taken by two small matrix
    products instead of two full DCTs - describe hashes every plane, so this is its hot path."""
    small = np.asarray(Image.fromarray(np.ascontiguousarray(grey(pixels))).resize((32, 32), Image.LANCZOS), float)
    low = _DCT8 @ small @ _DCT8.T
    return np.packbits(low.ravel() > np.median(low)).tobytes().hex()


def contrast(pixels: np.ndarray) -> float:
    """Standard deviation of the grey levels: near 0 means a blank image."""
    return float(grey(pixels).std())
