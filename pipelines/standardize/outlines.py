"""Masks drawn as a closed outline (a fetal head circumference traced as a thin ellipse ring): the structure is
the region the ring encloses, so its area and shape must come from the filled region, never from the ring's own
pixels. A 2D instance counts as an outline when it is thin (its largest inscribed half-width is at most
``outline_max_half_width`` px), encloses exactly one hole, that hole is at least ``outline_hole_ratio`` times
the ring's own area and holds no other labelled pixel. Ring-shaped anatomy (a myocardium around its cavity, a
vessel loop) is thicker or encloses less, and stays as drawn."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from pipelines.config import StandardizeSettings


def enclosed(ring: np.ndarray, s: StandardizeSettings) -> np.ndarray | None:
    """The pixels a closed outline encloses (excluding the ring), or None when ``ring`` is no outline."""
    area = int(ring.sum())
    if area == 0:
        return None
    holes = ndimage.binary_fill_holes(ring) & ~ring  # background 4-connected: an 8-connected ring is closed
    n_hole = int(holes.sum())
    if n_hole < s.outline_hole_ratio * area:
        return None
    if ndimage.label(holes)[1] != 1:
        return None
    if float(ndimage.distance_transform_edt(np.pad(ring, 1)).max()) > s.outline_max_half_width:
        return None
    return holes


def fill_outlines(inst: np.ndarray, s: StandardizeSettings) -> set[int]:
    """Fill, in place, every instance of an integer instance plane that is a closed outline (its enclosed pixels
    get its id); returns the ids filled. Each instance is looked at inside its own bounding box."""
    filled: set[int] = set()
    if not s.fill_outlines or inst.max() <= 0:
        return filled
    for iid, box in enumerate(ndimage.find_objects(inst), start=1):
        if box is None:
            continue
        view = inst[box]
        holes = enclosed(view == iid, s)
        if holes is None or (view[holes] != 0).any():  # another structure inside: not a bare outline
            continue
        view[holes] = iid
        filled.add(iid)
    return filled
