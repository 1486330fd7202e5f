"""Deterministic words for the computed facts: position, patient side, area, intensity, boundary, shape.

Positions follow the binning we document for MedTrinity's "Specific position" (five bins per axis at
0.2 steps of the image, from the mask centroid); MedTrinity's own bin edges were never published, so
this is our rule, not theirs. Patient sides are stated only when the plane's orientation is recorded.
"""

from __future__ import annotations

import numpy as np

from pipelines.standardize.planes import OPPOSITE, SIDE_NAME, display_directions  # noqa: F401 (re-exported)

H_WORDS = ("left", "left-centre", "centre", "right-centre", "right")
V_WORDS = ("top", "upper-middle", "middle", "lower-middle", "bottom")
EDGES = np.array([0.2, 0.4, 0.6, 0.8])
AREA_BINS = ((0.01, "tiny"), (0.05, "small"), (0.2, "medium"), (0.5, "large"), (float("inf"), "very large"))


def position_bins(cx: np.ndarray, cy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bin indices 0..4 of normalized centroid coordinates (vectorized)."""
    return np.searchsorted(EDGES, np.asarray(cx, float), side="right"), \
        np.searchsorted(EDGES, np.asarray(cy, float), side="right")


def image_position(h: int, v: int) -> str:
    return f"{H_WORDS[h]} horizontally, {V_WORDS[v]} vertically"


def _side(pos: float, grows_to: str) -> str:
    """Anatomical word for a normalized coordinate along a display axis growing toward ``grows_to``."""
    if 0.4 <= pos < 0.6:
        return {"L": "midline", "R": "midline", "A": "mid anteroposterior", "P": "mid anteroposterior",
                "S": "mid craniocaudal", "I": "mid craniocaudal"}[grows_to]
    letter = grows_to if pos >= 0.6 else OPPOSITE[grows_to]
    name = SIDE_NAME[letter]
    return f"patient's {name}" if letter in "LR" else name


def patient_position(cx: float, cy: float, orientation: str | None, axis: str | None) -> str | None:
    """E.g. "patient's right, anterior" from the centroid, or None when the orientation is unknown."""
    dirs = display_directions(orientation, axis)
    if dirs is None:
        return None
    return f"{_side(cx, dirs[0])}, {_side(cy, dirs[1])}"


def viewer_left_is(orientation: str | None, axis: str | None) -> str | None:
    """Which patient direction the viewer's left shows (e.g. "patient's right"), for the caption."""
    dirs = display_directions(orientation, axis)
    if dirs is None:
        return None
    letter = OPPOSITE[dirs[0]]
    return f"patient's {SIDE_NAME[letter]}" if letter in "LR" else SIDE_NAME[letter]


def area_word(ratio: float) -> str:
    return next(w for edge, w in AREA_BINS if ratio < edge)


def area_text(ratio: float) -> str:
    """Percent with one decimal (MedTrinity writes "1.0%", "15%"); two decimals below 0.1%."""
    pct = 100 * ratio
    return f"{pct:.2f}%" if 0 < pct < 0.1 else f"{pct:.1f}%"


INTENSITY_SUFFIX = {"CT": "dense", "CTA": "dense", "PET": "avid", "Ultrasound": "echoic"}


def intensity_word(d: float | None, modality: str, iso_band: float) -> str | None:
    """hypo/iso/hyper + a suffix by modality (-dense for CT, -intense for MRI and the rest)."""
    if d is None or not np.isfinite(d):
        return None
    suffix = INTENSITY_SUFFIX.get(modality, "intense")
    prefix = "iso" if abs(d) < iso_band else ("hyper" if d > 0 else "hypo")
    return f"{prefix}{suffix}"


def boundary_word(sharpness: float | None, sharp: float, blurred: float) -> str | None:
    if sharpness is None or not np.isfinite(sharpness):
        return None
    return "sharp" if sharpness >= sharp else ("ill-defined" if sharpness < blurred else "moderately defined")


def shape_word(elongation: float | None, solidity: float | None) -> str | None:
    if elongation is None or solidity is None:
        return None
    form = "elongated" if elongation >= 0.6 else ("oval" if elongation >= 0.25 else "round")
    outline = "irregular" if solidity < 0.8 else "compact"
    return f"{form}, {outline}"


def article(phrase: str) -> str:
    """'a' or 'an' before a phrase (by its first letter: good enough for our fixed vocabulary)."""
    return f"an {phrase}" if phrase[:1].lower() in "aeiou" else f"a {phrase}"
