"""Local-global relations of an ROI to the other labelled structures on the same plane.

A structure is the union of every instance of one canonical label on the plane (boxes count as filled
rectangles). For each ROI we record which structures it touches, lies inside, contains or is surrounded
by, and on which side of them it lies (patient words when the orientation is known, image words else).
"""

from __future__ import annotations

import numpy as np

from pipelines.annotate.measure import crop_around, dilate
from pipelines.standardize.planes import OPPOSITE, SIDE_NAME, display_directions


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


def relations(roi: np.ndarray, bbox: tuple[int, int, int, int], centroid: tuple[float, float], label: str,
              structures: dict[str, tuple[np.ndarray, tuple[float, float], int]], ring_px: int,
              orientation: str | None, axis: str | None, nearest: int = 2, cap: int = 6) -> list[dict]:
    """Relations of one ROI (full-plane mask) to every other structure {label: (mask, centroid, area)}."""
    crop = crop_around(bbox, ring_px + 2, roi.shape)
    r = crop.of(roi)
    n_roi = max(int(r.sum()), 1)
    near = dilate(r, 1)
    ring = dilate(r, ring_px) & ~r
    n_ring = max(int(ring.sum()), 1)
    h, w = roi.shape
    out = []
    for other, (mask, (ox, oy), area) in structures.items():
        if other == label:
            continue
        m = crop.of(mask)
        overlap = int((r & m).sum())
        kinds = []
        if overlap >= 0.9 * n_roi:
            kinds.append("inside")
        elif area and overlap >= 0.9 * area:
            kinds.append("contains")
        elif (ring & m).sum() >= 0.6 * n_ring:
            kinds.append("surrounded by")
        elif (near & m).any():
            kinds.append("touches")
        dx, dy = (centroid[0] - ox) / w, (centroid[1] - oy) / h
        out.append({"structure": other, "relation": kinds[0] if kinds else "",
                    "side": side_of(dx, dy, orientation, axis), "distance": round(float(np.hypot(dx, dy)), 4)})
    out.sort(key=lambda e: (e["relation"] == "", e["distance"], e["structure"]))
    linked = [e for e in out if e["relation"]]
    return (linked + [e for e in out if not e["relation"]][:nearest])[:cap]


def relation_text(entries: list[dict]) -> str:
    """One sentence: "touches the kidney; lies to the patient's right of the spleen"."""
    parts = []
    for e in entries:
        if e["relation"] in ("inside", "contains", "surrounded by", "touches"):
            verb = {"inside": "lies inside", "contains": "contains", "surrounded by": "is surrounded by",
                    "touches": "touches"}[e["relation"]]
            parts.append(f"{verb} the {e['structure']} ({e['side']} its centre)")
        else:
            parts.append(f"lies {e['side']} the {e['structure']}")
    return "; ".join(parts) if parts else "no other labelled structure on this plane"
