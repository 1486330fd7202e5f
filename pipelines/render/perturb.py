"""Image perturbations of the robustness subset, each at three recorded severities, applied to the display
image before the mark is drawn (the question's mark stays exact; the anatomy is what degrades)."""

from __future__ import annotations

import cv2
import numpy as np

# severity 1..3 -> the parameter of each kind
LEVELS = {
    "gaussian_noise": {"sigma": (8.0, 16.0, 32.0)},  # grey levels (0..255)
    "gaussian_blur": {"sigma": (1.0, 2.0, 4.0)},  # px per 256 px of the shorter side
    "contrast": {"factor": (0.7, 0.5, 0.3)},  # grey levels pulled toward the mean (a narrower window)
    "downsample": {"factor": (2.0, 3.0, 4.0)},  # shrunk by this, then enlarged back
}


def parameters(kind: str, severity: int) -> dict:
    if kind not in LEVELS:
        raise ValueError(f"unknown perturbation {kind!r}; known: {sorted(LEVELS)}")
    return {name: values[severity - 1] for name, values in LEVELS[kind].items()}


def perturb(rgb: np.ndarray, kind: str, severity: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """The perturbed image (same size) and the parameters used."""
    p = parameters(kind, severity)
    h, w = rgb.shape[:2]
    img = rgb.astype(np.float32)
    if kind == "gaussian_noise":
        noise = rng.normal(0.0, p["sigma"], size=(h, w, 1)).astype(np.float32)  # one field for all channels: grey stays grey
        out = img + noise
    elif kind == "gaussian_blur":
        sigma = p["sigma"] * max(1.0, min(h, w) / 256.0)
        out = cv2.GaussianBlur(img, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
        p = {**p, "sigma_px": round(sigma, 3)}
    elif kind == "contrast":
        mean = img.mean(axis=(0, 1), keepdims=True)
        out = mean + (img - mean) * p["factor"]
    else:
        f = p["factor"]
        small = cv2.resize(img, (max(1, int(round(w / f))), max(1, int(round(h / f)))), interpolation=cv2.INTER_AREA)
        out = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8), p
