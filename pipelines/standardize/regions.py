"""Instances and their compact description: connected components, area, bbox, centroid, RLE."""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
from pycocotools import mask as cocomask
from scipy import ndimage

STRUCTURES_3D = {6: 1, 18: 2, 26: 3}
STRUCTURES_2D = {4: 1, 8: 2}


def _components(mask: np.ndarray, structure: np.ndarray) -> tuple[np.ndarray, int]:
    """scipy's connected components as uint16 (a label spread over a whole volume then needs half the memory of
    int32), or int32 when there are more than uint16 holds (scipy refuses the narrower type)."""
    try:
        return ndimage.label(mask, structure=structure, output=np.uint16)
    except RuntimeError:
        return ndimage.label(mask, structure=structure, output=np.int32)


def label_instances(labels: np.ndarray, names: dict[int, str], connectivity: int) -> tuple[np.ndarray, dict[int, tuple[str, int]]]:
    """One array of instance ids (connected components per label value, 2D or 3D) and
    id -> (label name, component index). Each label is labelled inside its bounding box only. The ids are
    uint16 while they fit (the usual case: a CT's 100-odd structures), int32 past 65,535: half the memory of
    a volume-sized int32 array in the worker that holds it."""
    structures = STRUCTURES_3D if labels.ndim == 3 else STRUCTURES_2D
    structure = ndimage.generate_binary_structure(labels.ndim, structures[connectivity])
    inst = np.zeros(labels.shape, np.uint16)
    table: dict[int, tuple[str, int]] = {}
    ints = labels if labels.dtype.kind in "iu" else labels.astype(np.int32)  # no int32 copy of an integer volume
    boxes = ndimage.find_objects(ints) if labels.max() > 0 else []
    next_id = 1
    for value in sorted(names):
        if value <= 0 or value > len(boxes) or boxes[value - 1] is None:
            continue
        box = boxes[value - 1]
        comp, n = _components(labels[box] == value, structure)
        if next_id - 1 + n > np.iinfo(inst.dtype).max:
            inst = inst.astype(np.int32)
        view = inst[box]
        fg = comp > 0
        view[fg] = comp[fg].astype(inst.dtype) + (next_id - 1)
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
    """A COCO RLE mask as a boolean (height, width) array. pycocotools writes 0s and 1s, so its bytes are read as
    booleans in place (a bool copy of every decoded mask was 30 % of decoding it)."""
    return cocomask.decode({"size": [height, width], "counts": counts.encode("ascii")}).view(bool)


def coco_strings(counts: np.ndarray, lengths: np.ndarray) -> list[str]:
    """COCO's compressed RLE strings of many masks at once: ``counts`` holds every mask's uncompressed run
    counts back to back, ``lengths`` how many belong to each. The same encoding as pycocotools' rleToString
    (a count from the third on is stored as its difference to the count two before, then written as 5-bit
    groups, low first, with a continuation bit, offset by 48), vectorized over all counts of all masks."""
    counts = np.asarray(counts, np.int64)
    lengths = np.asarray(lengths, np.int64)
    if counts.size == 0:
        return [""] * len(lengths)
    first = np.repeat(np.cumsum(lengths) - lengths, lengths)
    rank = np.arange(counts.size) - first
    x = counts.copy()
    later = rank > 2
    x[later] -= counts[np.flatnonzero(later) - 2]
    chars, active = [], np.ones(x.size, bool)
    while active.any():
        c = x & 0x1F
        x = x >> 5
        more = np.where(c & 0x10, x != -1, x != 0) & active
        chars.append(np.where(active, (c | (more << 5)) + 48, 0))
        active = more
    grid = np.stack(chars, axis=1)  # one row per count, its characters left to right, 0 = none
    text = grid[grid > 0].astype(np.uint8).tobytes().decode("ascii")
    per_mask = np.add.reduceat((grid > 0).sum(axis=1), np.r_[0, np.cumsum(lengths)[:-1]]) \
        if lengths.size else np.zeros(0, np.int64)
    per_mask[lengths == 0] = 0
    ends = np.cumsum(per_mask)
    return [text[e - n:e] for e, n in zip(ends.tolist(), per_mask.tolist())]


@dataclass
class StackRegions:
    """Every instance of a stack of integer planes (n, h, w) with at least ``floor`` pixels, as arrays sorted by
    (plane, instance id); ``dropped`` counts the smaller ones."""

    plane: np.ndarray  # position of the instance's plane in the stack
    ids: np.ndarray
    area: np.ndarray
    bbox: np.ndarray  # (k, 4) x0, y0, x1, y1 in pixel edges
    centroid: np.ndarray  # (k, 2) x, y
    rle: list[str]
    dropped: int
    faint_plane: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # the dropped ones: plane
    faint_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # ... and instance id


def describe_stack(stack: np.ndarray, floor: int = 1) -> StackRegions:
    """Area, bbox, centroid and COCO RLE of every instance on every plane of a stack in one pass over the
    runs of the column-major pixel order (COCO's), not one pass per plane and per instance: describe calls it
    once per axis of a volume. Geometry comes from runs split at column ends (each lies in one column);
    the RLE from runs split only at plane ends."""
    m, h, w = stack.shape
    n = h * w
    flat = np.ascontiguousarray(np.swapaxes(stack, 1, 2)).ravel()
    edge = np.empty(flat.size, bool)
    edge[0] = True
    np.not_equal(flat[1:], flat[:-1], out=edge[1:])
    col_edge = edge.copy()
    col_edge[::h] = True
    edge[::n] = True
    empty = StackRegions(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64),
                         np.zeros((0, 4)), np.zeros((0, 2)), [], 0)
    # geometry, from runs inside one column
    starts = np.flatnonzero(col_edge)
    vals = flat[starts]
    lens = np.diff(np.r_[starts, flat.size])
    fg = vals > 0
    if not fg.any():
        return empty
    starts, vals, lens = starts[fg], vals[fg].astype(np.int64), lens[fg]
    span = int(vals.max()) + 1
    plane = starts // n
    key = plane * span + vals
    order = np.argsort(key, kind="stable")
    key, starts, lens = key[order], starts[order], lens[order]
    head = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    area = np.add.reduceat(lens, head)
    keep = area >= floor
    dropped = int((~keep).sum())
    faint = key[head][~keep]  # still visible specks on their plane, though too small to be a region
    faint_plane, faint_ids = faint // span, faint % span
    if not keep.any():
        return StackRegions(*[a for a in (empty.plane, empty.ids, empty.area, empty.bbox, empty.centroid)], [],
                            dropped, faint_plane, faint_ids)
    pos = starts - (starts // n) * n
    x, y0 = pos // h, pos % h
    y1 = y0 + lens - 1
    bbox = np.stack([np.minimum.reduceat(x, head), np.minimum.reduceat(y0, head),
                     np.maximum.reduceat(x, head) + 1, np.maximum.reduceat(y1, head) + 1], axis=1)
    cx = np.add.reduceat(x * lens, head) / area
    cy = np.add.reduceat((y0 + y1) * lens // 2, head) / area
    kept_keys = key[head][keep]
    # RLE, from runs inside one plane (a run may continue into the next column)
    rs = np.flatnonzero(edge)
    rv = flat[rs]
    re = np.r_[rs[1:], flat.size]
    sel = np.isin(plane_key := (rs // n) * span + rv.astype(np.int64), kept_keys) & (rv > 0)
    rs, re, rk = rs[sel], re[sel], plane_key[sel]
    order = np.argsort(rk, kind="stable")
    rs, re, rk = rs[order], re[order], rk[order]
    base = (rs // n) * n
    rs, re = rs - base, re - base
    rhead = np.r_[True, rk[1:] != rk[:-1]]
    gap = rs - np.where(rhead, 0, np.r_[0, re[:-1]])
    group = np.cumsum(rhead) - 1  # which kept instance each run belongs to
    runs_per = np.bincount(group, minlength=kept_keys.size)
    slot = np.arange(rs.size) - np.repeat(np.cumsum(runs_per) - runs_per, runs_per)
    offset = 2 * (np.cumsum(runs_per) - runs_per) + np.arange(kept_keys.size)  # first count of each mask
    counts = np.empty(2 * rs.size + kept_keys.size, np.int64)
    counts[offset[group] + 2 * slot] = gap
    counts[offset[group] + 2 * slot + 1] = re - rs
    last = np.flatnonzero(np.r_[rhead[1:], True])
    tail = n - re[last]
    counts[offset + 2 * runs_per] = tail
    lengths = 2 * runs_per + 1
    trim = tail == 0  # as COCO ends: no trailing empty run
    if trim.any():
        counts = np.delete(counts, (offset + 2 * runs_per)[trim])
        lengths = lengths - trim
    return StackRegions(plane=kept_keys // span, ids=kept_keys % span, area=area[keep],
                        bbox=bbox[keep].astype(float), centroid=np.stack([cx, cy], axis=1)[keep],
                        rle=coco_strings(counts, lengths), dropped=dropped, faint_plane=faint_plane,
                        faint_ids=faint_ids)


def rle_counts(plane: np.ndarray, ids: np.ndarray) -> list[str]:
    """COCO compressed RLE of each instance id (sorted ascending) of one integer plane."""
    d = describe_stack(plane[None])
    found = dict(zip(d.ids.tolist(), d.rle))
    return [found[int(i)] for i in ids]


def describe_instances(plane: np.ndarray, floor: int) -> tuple[list[tuple[int, RegionShape]], list[int]]:
    """(instance id, shape) for every instance of one integer plane with at least ``floor`` pixels, and the ids
    of the smaller ones, which are dropped (the 2D path; volumes describe a stack of planes at once)."""
    d = describe_stack(np.asarray(plane)[None], floor)
    shapes = [RegionShape(area_px=a, bbox=b, centroid=c, rle=r)
              for a, b, c, r in zip(d.area.tolist(), d.bbox.tolist(), d.centroid.tolist(), d.rle)]
    return list(zip(d.ids.tolist(), shapes)), d.faint_ids.tolist()


RING_PX = 3  # width of the band of surroundings a structure is compared with
_RING = np.ones((2 * RING_PX + 1, 2 * RING_PX + 1), np.uint8)  # chessboard reach RING_PX


def ring_cnr(shown: np.ndarray, instances: np.ndarray, iid: int, bbox: list[float]) -> float:
    """How far a structure stands out from what surrounds it on the plane shown: the difference of its mean grey
    level and that of a ``RING_PX`` band just outside it, over the band's standard deviation (plus one grey level,
    so a flat band does not divide by zero). ``shown`` is the 8-bit grey plane, ``instances`` the plane's instance
    ids, ``bbox`` the instance's box; only the box grown by the band is read. 0 when nothing surrounds it."""
    h, w = instances.shape
    x0, y0, x1, y1 = (int(v) for v in bbox)
    ys = slice(max(0, y0 - RING_PX), min(h, y1 + RING_PX))
    xs = slice(max(0, x0 - RING_PX), min(w, x1 + RING_PX))
    inside = (instances[ys, xs] == iid).view(np.uint8)
    band = cv2.dilate(inside, _RING)  # the band's square reach, as three 3 x 3 dilations give
    band -= inside  # the kernel holds its centre: what is inside is inside the dilation too
    if not cv2.countNonZero(inside) or not cv2.countNonZero(band):
        return 0.0
    # OpenCV's masked mean and deviation of 8-bit pixels (integer sums): numpy's over boolean selections cost
    # twice as much for the small regions describe measures by the ten thousand
    grey = np.ascontiguousarray(shown[ys, xs])
    ring_mean, ring_std = (v[0, 0] for v in cv2.meanStdDev(grey, mask=band))
    return round(float(abs(cv2.mean(grey, mask=inside)[0] - ring_mean) / (ring_std + 1.0)), 3)


def min_area(width: int, height: int, min_pixels: int, min_fraction: float) -> int:
    return max(min_pixels, int(np.ceil(min_fraction * width * height)))
