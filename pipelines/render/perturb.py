"""Image perturbations of the robustness config, each at three recorded severities relative to the image, applied
to the display image before the mark is drawn (the question's mark stays exact; the anatomy is what degrades)."""

from __future__ import annotations

import cv2
import numpy as np

# severity 1..3 -> the parameter of each kind. Every level is relative to the image, so "mild" means the same on a
# 100 px and a 1,000 px image, on a dark and a bright one.
LEVELS = {
    "gaussian_noise": {"sigma_fraction": (0.03, 0.06, 0.12)},  # noise std as a share of the image's grey range
    "gaussian_blur": {"sigma_fraction": (0.004, 0.008, 0.016)},  # blur std as a share of the shorter side
    "contrast": {"factor": (0.7, 0.5, 0.3)},  # grey levels pulled toward the mean (a narrower window)
    "downsample": {"factor": (2.0, 3.0, 4.0)},  # shrunk by this, then enlarged back
}
RULE = ("noise: Gaussian, std = 3 / 6 / 12 % of the image's grey range (0.5th to 99.5th percentile); blur: Gaussian, "
        "std = 0.4 / 0.8 / 1.6 % of the shorter side; contrast: grey levels pulled toward the mean to 70 / 50 / 30 %; "
        "downsample: shrunk 2 / 3 / 4 times and enlarged back")


def parameters(kind: str, severity: int) -> dict:
    if kind not in LEVELS:
        raise ValueError(f"unknown perturbation {kind!r}; known: {sorted(LEVELS)}")
    return {name: values[severity - 1] for name, values in LEVELS[kind].items()}


def _to_uint8(values: np.ndarray) -> np.ndarray:
    """Float grey levels rounded half to even and clipped to 0-255, in place (the float array is scratch)."""
    np.rint(values, out=values)
    np.clip(values, 0, 255, out=values)
    return values.astype(np.uint8)


def perturb(rgb: np.ndarray, kind: str, severity: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """The perturbed image (same size) and the parameters used."""
    p = parameters(kind, severity)
    h, w = rgb.shape[:2]
    if kind == "contrast":
        # every pixel of a channel with one grey level gets the same value: the float32 arithmetic is done once
        # per level (a 256-entry table per channel, the same operations in the same types) and looked up
        mean = rgb.astype(np.float32).mean(axis=(0, 1), keepdims=True)
        levels = np.arange(256, dtype=np.float32).reshape(256, *([1] * (rgb.ndim - 1)))
        table = _to_uint8(mean + (levels - mean) * p["factor"])
        return cv2.LUT(np.ascontiguousarray(rgb), table.reshape(256, 1, -1)).reshape(rgb.shape), p
    img = rgb.astype(np.float32)
    if kind == "gaussian_noise":
        lo, hi = np.percentile(img, [0.5, 99.5])
        sigma = p["sigma_fraction"] * max(float(hi - lo), 1.0)
        noise = rng.normal(0.0, sigma, size=(h, w, 1)).astype(np.float32)  # one field for all channels: grey stays grey
        out = np.add(img, noise if rgb.ndim == 3 else noise[..., 0], out=img)
        p = {**p, "sigma_grey": round(sigma, 3)}
    elif kind == "gaussian_blur":
        sigma = p["sigma_fraction"] * min(h, w)
        out = cv2.GaussianBlur(img, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
        p = {**p, "sigma_px": round(sigma, 3)}
    else:
        f = p["factor"]
        small = cv2.resize(img, (max(1, int(round(w / f))), max(1, int(round(h / f)))), interpolation=cv2.INTER_AREA)
        out = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    return _to_uint8(out), p
