"""Instances and their compact description: connected components, area, bbox, centroid, RLE."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pycocotools import mask as cocomask
from scipy import ndimage

STRUCTURES_3D = {6: 1, 18: 2, 26: 3}
STRUCTURES_2D = {4: 1, 8: 2}


def label_instances(labels: np.ndarray, names: dict[int, str], connectivity: int) -> tuple[np.ndarray, dict[int, tuple[str, int]]]:
    """One int32 array of instance ids (connected components per label value, 2D or 3D) and
    id -> (label name, component index). Each label is labelled inside its bounding box only."""
    structures = STRUCTURES_3D if labels.ndim == 3 else STRUCTURES_2D
    structure = ndimage.generate_binary_structure(labels.ndim, structures[connectivity])
    inst = np.zeros(labels.shape, np.int32)
    table: dict[int, tuple[str, int]] = {}
    boxes = ndimage.find_objects(labels.astype(np.int32, copy=False)) if labels.max() > 0 else []
    next_id = 1
    for value in sorted(names):
        if value <= 0 or value > len(boxes) or boxes[value - 1] is None:
            continue
        box = boxes[value - 1]
        comp, n = ndimage.label(labels[box] == value, structure=structure)
        view = inst[box]
        fg = comp > 0
        view[fg] = comp[fg] + (next_id - 1)
        for c in range(1, n + 1):
            table[next_id + c - 1] = (names[value], c)
        next_id += n
    return inst, table


@dataclass
class RegionShape:
    area_px: int
    bbox: list[float]  # x0, y0, x1, y1 in pixel edges
    centroid: list[float]  # x, y
    rle: str


def encode_rle(mask: np.ndarray) -> str:
    """COCO compressed run-length counts (column-major); the size is the region's height/width."""
    return cocomask.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode("ascii")


def decode_rle(counts: str, height: int, width: int) -> np.ndarray:
    return cocomask.decode({"size": [height, width], "counts": counts.encode("ascii")}).astype(bool)


def rle_counts(plane: np.ndarray, ids: np.ndarray) -> list[str]:
    """COCO compressed RLE of each instance id (sorted ascending) of an integer plane, from the runs of the
    column-major pixel order in one pass: O(pixels + runs), not O(pixels x instances) as one boolean mask per
    instance would be (a 512 x 512 plane with 100 labelled structures)."""
    h, w = plane.shape
    flat = np.ascontiguousarray(plane.T).ravel()
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    starts, ends = np.r_[0, change], np.r_[change, flat.size]
    vals = flat[starts]
    sel = np.isin(vals, ids)
    order = np.argsort(vals[sel], kind="stable")
    starts, ends, vals = starts[sel][order], ends[sel][order], vals[sel][order]
    lo, hi = np.searchsorted(vals, ids, "left"), np.searchsorted(vals, ids, "right")
    objs = []
    for a, b in zip(lo.tolist(), hi.tolist()):
        s, e = starts[a:b], ends[a:b]
        counts = np.empty(2 * len(s) + 1, np.int64)
        counts[0] = s[0]
        counts[1:-1:2] = e - s
        counts[2:-1:2] = s[1:] - e[:-1]
        counts[-1] = flat.size - e[-1]
        objs.append({"counts": (counts if counts[-1] else counts[:-1]).tolist(), "size": [h, w]})  # as COCO ends
    return [r["counts"].decode("ascii") for r in cocomask.frPyObjects(objs, h, w)] if objs else []


def describe_plane(plane: np.ndarray, ids: np.ndarray) -> list[RegionShape]:
    """Describe several instances of one integer plane at once (vectorized area, bbox,
    centroid; one batched RLE call) - the per-slice hot path of 3D standardization."""
    if ids.size == 0:
        return []
    flat = plane.ravel()
    area = np.bincount(flat, minlength=int(ids.max()) + 1)[ids]
    ys, xs = np.divmod(np.arange(flat.size), plane.shape[1])
    sel = np.isin(flat, ids)
    lab = flat[sel]
    pos = np.searchsorted(ids, lab)
    cy = np.bincount(pos, weights=ys[sel], minlength=ids.size) / area
    cx = np.bincount(pos, weights=xs[sel], minlength=ids.size) / area
    x0 = np.full(ids.size, plane.shape[1]); y0 = np.full(ids.size, plane.shape[0])
    x1 = np.zeros(ids.size, int); y1 = np.zeros(ids.size, int)
    np.minimum.at(x0, pos, xs[sel]); np.minimum.at(y0, pos, ys[sel])
    np.maximum.at(x1, pos, xs[sel]); np.maximum.at(y1, pos, ys[sel])
    rles = rle_counts(plane, ids)
    return [RegionShape(area_px=int(area[k]), bbox=[float(x0[k]), float(y0[k]), float(x1[k] + 1), float(y1[k] + 1)],
                        centroid=[float(cx[k]), float(cy[k])],
                        rle=rles[k])
            for k in range(ids.size)]


def describe_instances(plane: np.ndarray, floor: int) -> tuple[list[tuple[int, RegionShape]], list[int]]:
    """(instance id, shape) for every instance of an integer plane with at least ``floor`` pixels,
    and the ids of the smaller ones, which are dropped (they are still visible specks on the plane)."""
    ids = np.unique(plane)
    ids = ids[ids > 0]
    if ids.size == 0:
        return [], []
    areas = np.bincount(plane.ravel(), minlength=int(ids.max()) + 1)[ids]
    keep = ids[areas >= floor]
    shapes = describe_plane(np.ascontiguousarray(plane), keep)
    return list(zip(keep.tolist(), shapes)), ids[areas < floor].tolist()


def min_area(width: int, height: int, min_pixels: int, min_fraction: float) -> int:
    return max(min_pixels, int(np.ceil(min_fraction * width * height)))
