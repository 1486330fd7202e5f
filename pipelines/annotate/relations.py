"""Local-global relations of an ROI to the other labelled structures of its plane, and the structure that
contains it.

A structure is the union of every instance of one raw label on the plane (boxes count as filled
rectangles), gathered from every image of the plane whatever CT window it was rendered with, so a
sentence about the plane holds for the plane. Raw labels stay apart: the left and the right rib are two
structures with two centroids. Only named structures (pipelines.annotate.names) enter a relation; the
others still make "no other structure is labelled here" false, which the caller decides.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from pipelines.annotate.measure import crop_around, dilate
from pipelines.standardize.planes import OPPOSITE, SIDE_NAME, display_directions


@dataclass
class Structure:
    """One raw label on one plane: its union mask, centroid (x, y), area and display name (None: unnamed)."""

    raw_label: str
    name: str | None
    mask: np.ndarray
    centroid: tuple[float, float]
    area: int
    _filled: np.ndarray | None = field(default=None, repr=False)

    @property
    def filled(self) -> np.ndarray:
        """The mask with its holes filled: an organ keeps the lesion carved out of it inside its outline."""
        if self._filled is None:
            self._filled = ndimage.binary_fill_holes(self.mask)
        return self._filled


def structure(raw_label: str, name: str | None, mask: np.ndarray) -> Structure:
    ys, xs = np.nonzero(mask)
    return Structure(raw_label, name, mask, (float(xs.mean()), float(ys.mean())), int(mask.sum()))


def side_of(dx: float, dy: float, orientation: str | None, axis: str | None) -> str:
    """Where a point lies relative to another, from the dominant display offset (dx, dy > 0: right, down)."""
    horizontal = abs(dx) >= abs(dy)
    step = dx if horizontal else dy
    dirs = display_directions(orientation, axis)
    if dirs is None:
        if horizontal:
            return "right of" if step > 0 else "left of"
        return "below" if step > 0 else "above"
    letter = dirs[0 if horizontal else 1]
    letter = letter if step > 0 else OPPOSITE[letter]
    if letter in "LR":
        return f"to the patient's {SIDE_NAME[letter]} of"
    return f"{SIDE_NAME[letter]} to"


def relations(roi: np.ndarray, bbox: tuple[int, int, int, int], centroid: tuple[float, float], raw_label: str,
              structures: list[Structure], ring_px: int, orientation: str | None, axis: str | None,
              nearest: int = 2, cap: int = 6) -> list[dict]:
    """Relations of one ROI (full-plane mask) to every other named structure of its plane."""
    crop = crop_around(bbox, ring_px + 2, roi.shape)
    r = crop.of(roi)
    n_roi = max(int(r.sum()), 1)
    near = dilate(r, 1)
    ring = dilate(r, ring_px) & ~r
    n_ring = max(int(ring.sum()), 1)
    h, w = roi.shape
    out = []
    for s in structures:
        if s.raw_label == raw_label or s.name is None:
            continue
        m = crop.of(s.mask)
        overlap = int((r & m).sum())
        kinds = []
        if overlap >= 0.9 * n_roi:
            kinds.append("inside")
        elif s.area and overlap >= 0.9 * s.area:
            kinds.append("contains")
        elif (ring & m).sum() >= 0.6 * n_ring:
            kinds.append("surrounded by")
        elif (near & m).any():
            kinds.append("touches")
        ox, oy = s.centroid
        dx, dy = (centroid[0] - ox) / w, (centroid[1] - oy) / h
        out.append({"structure": s.name, "raw_label": s.raw_label, "relation": kinds[0] if kinds else "",
                    "side": side_of(dx, dy, orientation, axis), "distance": round(float(np.hypot(dx, dy)), 4)})
    out.sort(key=lambda e: (e["relation"] == "", e["distance"], e["structure"]))
    linked = [e for e in out if e["relation"]]
    return (linked + [e for e in out if not e["relation"]][:nearest])[:cap]


def container(roi: np.ndarray, raw_label: str, structures: list[Structure], share: float = 0.9) -> Structure | None:
    """The smallest other named structure whose hole-filled outline holds at least ``share`` of the ROI (label
    nesting, or a lesion carved out of its organ), or None."""
    n = max(int(roi.sum()), 1)
    found = [s for s in structures if s.raw_label != raw_label and s.name is not None and s.area > n
             and int((roi & s.filled).sum()) >= share * n]
    return min(found, key=lambda s: (s.area, s.raw_label)) if found else None


def relation_text(entries: list[dict]) -> str:
    """One clause: "touches the left kidney (...); lies to the patient's right of the spleen" ('' if none)."""
    parts = []
    for e in entries:
        if e["relation"] in ("inside", "contains", "surrounded by", "touches"):
            verb = {"inside": "lies inside", "contains": "contains", "surrounded by": "is surrounded by",
                    "touches": "touches"}[e["relation"]]
            parts.append(f"{verb} the {e['structure']} ({e['side']} its centre)")
        else:
            parts.append(f"lies {e['side']} the {e['structure']}")
    return "; ".join(parts)
