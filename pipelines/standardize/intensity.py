"""Intensity to 8-bit: CT windows, per-volume percentile clipping for MR/PET, and plain bit-depth
conversion for photographic modalities. Every transform reports its name and parameters."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import numpy as np

from pipelines.config import StandardizeSettings
from pipelines.modalities import family


@dataclass(frozen=True)
class Transform:
    """A recorded intensity mapping: ``name`` plus the parameters that reproduce it."""

    name: str  # ct_window | percentile_clip | bit_depth | identity
    params: dict[str, float | str | bool] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.params.get("window", self.name) if self.name == "ct_window" else self.name

    def apply(self, arr: np.ndarray) -> np.ndarray:
        """Map one 2D plane (or an RGB image) to uint8 (H, W, 3)."""
        return to_rgb(self.apply_plane(arr))

    def apply_plane(self, arr: np.ndarray) -> np.ndarray:
        """Map one 2D plane (or an RGB image) to uint8, keeping its channels (grey stays 2D: cheaper to
        describe, and the bytes the recorded sha256 covers)."""
        if self.name == "identity":
            out = arr.astype(np.uint8, copy=False)
        else:
            lo, hi = float(self.params["low"]), float(self.params["high"])
            if arr.dtype.kind in "iu" and arr.dtype.itemsize <= 2 and arr.size > 1 << 16:
                # every value a 8/16-bit integer can take, mapped once by the same float32 arithmetic; then a lookup
                out = _lookup(lo, hi, arr.dtype.str)[arr.view(f"u{arr.dtype.itemsize}")]
            else:
                out = _scaled(arr, lo, hi)
        if self.params.get("invert"):
            out = 255 - out
        return np.ascontiguousarray(out)


def _scaled(arr: np.ndarray, lo: float, hi: float) -> np.ndarray:
    scaled = (arr.astype(np.float32) - lo) * (255.0 / max(hi - lo, 1e-6))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


@lru_cache(maxsize=32)
def _lookup(lo: float, hi: float, dtype: str) -> np.ndarray:
    """The 8-bit value of every value an 8- or 16-bit integer type can take: made once per window and type, not
    once per plane (render maps its planes one by one). Read-only, as it is shared."""
    kind = np.dtype(dtype)
    values = np.arange(1 << (8 * kind.itemsize), dtype=np.int64).astype(f"u{kind.itemsize}").view(kind)
    table = _scaled(values, lo, hi)
    table.flags.writeable = False
    return table


def to_rgb(pixels: np.ndarray) -> np.ndarray:
    """(H, W) grey or (H, W, 3) uint8 as (H, W, 3) (OpenCV copies the grey level into the three channels in a
    twentieth of np.repeat's time: render does it for every plane it shows)."""
    if pixels.ndim != 2:
        return pixels
    if pixels.dtype == np.uint8 and pixels.size:
        return cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_GRAY2RGB)
    return np.ascontiguousarray(np.repeat(pixels[:, :, None], 3, axis=2))


def ct_window(name: str, settings: StandardizeSettings) -> Transform:
    if name not in settings.ct_windows:
        raise KeyError(f"unknown CT window '{name}'; configured: {sorted(settings.ct_windows)}")
    w = settings.ct_windows[name]
    return Transform("ct_window", {"window": name, "level": w.level, "width": w.width,
                                   "low": w.level - w.width / 2, "high": w.level + w.width / 2})


def percentile_clip(volume: np.ndarray, settings: StandardizeSettings) -> Transform:
    """Percentiles over the whole volume's non-background voxels (computed once per volume)."""
    p_lo, p_hi = settings.mr_percentiles
    sample = volume[volume > volume.min()] if np.any(volume > volume.min()) else volume.ravel()
    if sample.size > 4_000_000:  # a fixed, deterministic subsample keeps memory flat on big volumes
        sample = sample.ravel()[:: sample.size // 4_000_000 + 1]
    lo, hi = np.percentile(sample, [p_lo, p_hi])
    return Transform("percentile_clip", {"p_low": p_lo, "p_high": p_hi, "low": float(lo), "high": float(hi)})


def photographic(image: np.ndarray, photometric: str = "") -> Transform:
    """Keep 8-bit pixels as they are; scale other bit depths linearly; invert MONOCHROME1."""
    invert = photometric.upper() == "MONOCHROME1"
    if image.dtype == np.uint8:
        return Transform("identity", {"invert": invert} if invert else {})
    lo, hi = float(image.min()), float(image.max())
    return Transform("bit_depth", {"dtype": str(image.dtype), "low": lo, "high": hi if hi > lo else lo + 1,
                                   "invert": invert})


def choose(modality: str, volume: np.ndarray, settings: StandardizeSettings, window: str | None,
           photometric: str = "") -> Transform:
    fam = family(modality)
    if fam == "ct":
        return ct_window(window or settings.default_ct_window, settings)
    if fam in ("mr", "pet"):
        return percentile_clip(volume, settings)
    return photographic(volume, photometric)
