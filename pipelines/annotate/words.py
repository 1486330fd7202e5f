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


# Words for "darker / as bright / brighter inside than around", by what a modality's grey level means:
# attenuation (CT, X-ray), MR signal, tracer uptake, echogenicity, reflectivity, stain or electron density in
# microscopy, plain brightness in photographs. Ordered (lower inside, similar, higher inside).
INTENSITY_WORDS: dict[str, tuple[str, str, str]] = {
    "ct": ("hypodense", "isodense", "hyperdense"),
    "mr": ("hypointense", "isointense", "hyperintense"),
    "pet": ("hypometabolic", "isometabolic", "hypermetabolic"),
    "ultrasound": ("hypoechoic", "isoechoic", "hyperechoic"),
    "oct": ("hyporeflective", "isoreflective", "hyperreflective"),
    "radiograph": ("more radiolucent", "of similar radiodensity", "more radiopaque"),
    "photo": ("darker", "of similar brightness", "brighter"),
    "stain": ("more darkly stained", "similarly stained", "paler"),
    "electron": ("electron-dense", "of similar electron density", "electron-lucent"),
}
ALL_INTENSITY_WORDS = tuple(w for ws in INTENSITY_WORDS.values() for w in ws)


def intensity_family(modality: str) -> str:
    """Which vocabulary of INTENSITY_WORDS suits a modality (pipelines.modalities' families refined)."""
    from pipelines.modalities import MODALITIES, QUESTION_FAMILY
    fam = MODALITIES.get(modality)
    if fam in ("ct", "mr", "pet"):
        return fam
    special = {"Ultrasound": "ultrasound", "OCT": "oct", "X-ray": "radiograph", "Mammography": "radiograph",
               "Electron Microscopy": "electron"}
    if modality in special:
        return special[modality]
    return "stain" if QUESTION_FAMILY.get(modality) == "microscopy" else "photo"


def intensity_word(d: float | None, modality: str, iso_band: float) -> str | None:
    """The family's word for the standardized difference d (inside minus ring): |d| < iso_band is 'similar'."""
    if d is None or not np.isfinite(d):
        return None
    words = INTENSITY_WORDS[intensity_family(modality)]
    return words[1] if abs(d) < iso_band else (words[2] if d > 0 else words[0])


HUES = ((15, "red"), (45, "orange"), (70, "yellow"), (165, "green"), (200, "cyan"), (260, "blue"),
        (295, "purple"), (345, "pink"), (361, "red"))


def colour_word(rgb: tuple[float, float, float] | None) -> str | None:
    """A coarse name of a mean colour: HSV hue bins, 'pale' below 0.2 saturation (a pale red is pink), 'grey'
    below 0.05, a dark red or orange 'brown', 'dark' below 0.35 value, 'light' for bright, weakly saturated ones."""
    if rgb is None:
        return None
    r, g, b = (float(c) / 255.0 for c in rgb)
    hi, lo = max(r, g, b), min(r, g, b)
    if hi < 0.08:
        return "black"
    sat = (hi - lo) / hi
    tone = "dark " if hi < 0.35 else ("light " if hi > 0.8 and sat < 0.45 else "")
    if sat < 0.05:
        return f"{tone}grey"
    d = hi - lo
    h = (60 * ((g - b) / d % 6) if hi == r else 60 * ((b - r) / d + 2) if hi == g else 60 * ((r - g) / d + 4))
    hue = next(name for edge, name in HUES if h < edge)
    if hue in ("red", "orange") and hi < 0.5 and sat >= 0.2:  # a dark red or orange is what a reader calls brown
        return "dark brown" if hi < 0.3 else "brown"
    if sat < 0.2:
        return "pale pink" if hue in ("red", "pink") else f"pale {hue}"
    return tone + hue


def margin_word(solidity: float | None) -> str | None:
    """Margin of a lesion outline from its solidity (pixels / convex hull): smooth, lobulated or irregular."""
    if solidity is None or not np.isfinite(solidity):
        return None
    return "smooth" if solidity >= 0.9 else ("lobulated" if solidity >= 0.75 else "irregular")


def part_of(cx: float, cy: float, orientation: str | None, axis: str | None) -> str:
    """Which part of a container a point lies in, from its position (0..1) in the container's box: thirds per
    axis, in patient words when the orientation is known ("patient's right, posterior part"), else image words
    ("upper-left part"); the middle third of both is the "central part"."""
    hb, vb = min(int(cx * 3), 2), min(int(cy * 3), 2)
    if hb == 1 and vb == 1:
        return "central part"
    dirs = display_directions(orientation, axis)
    if dirs is None:
        v = ("upper", "", "lower")[vb]
        h = ("left", "", "right")[hb]
        return f"{v}{'-' if v and h else ''}{h} part"
    words = []
    for bin_, grows in ((hb, dirs[0]), (vb, dirs[1])):
        if bin_ == 1:
            continue
        letter = grows if bin_ == 2 else OPPOSITE[grows]
        words.append(f"patient's {SIDE_NAME[letter]}" if letter in "LR" else SIDE_NAME[letter])
    return ", ".join(words) + " part"


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
