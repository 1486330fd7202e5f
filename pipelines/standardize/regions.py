"""Instances and their compact description: connected components, area, bbox, centroid, RLE."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
from pycocotools import mask as cocomask
from scipy import ndimage

STRUCTURES_3D = {6: 1, 18: 2, 26: 3}
STRUCTURES_2D = {4: 1, 8: 2}


def label_instances_3d(labels: np.ndarray, names: dict[int, str], connectivity: int) -> tuple[np.ndarray, dict[int, tuple[str, int]]]:
    """One int32 volume of instance ids (3D connected components per label value) and
    id -> (label name, component index). Labeling is done inside each label's bounding box."""
    structure = ndimage.generate_binary_structure(3, STRUCTURES_3D[connectivity])
    inst = np.zeros(labels.shape, np.int32)
    table: dict[int, tuple[str, int]] = {}
    boxes = ndimage.find_objects(labels.astype(np.int32, copy=False)) if labels.max() > 0 else []
    next_id = 1
    for value in sorted(names):
        if value <= 0 or value > len(boxes) or boxes[value - 1] is None:
            continue
        box = boxes[value - 1]
        comp, n = ndimage.label(labels[box] == value, structure=structure)
        if n == 0:
            continue
        view = inst[box]
        fg = comp > 0
        view[fg] = comp[fg] + (next_id - 1)
        for c in range(1, n + 1):
            table[next_id + c - 1] = (names[value], c)
        next_id += n
    return inst, table


def label_instances_2d(labels: np.ndarray, names: dict[int, str], connectivity: int) -> tuple[np.ndarray, dict[int, tuple[str, int]]]:
    structure = ndimage.generate_binary_structure(2, STRUCTURES_2D[connectivity])
    inst = np.zeros(labels.shape, np.int32)
    table: dict[int, tuple[str, int]] = {}
    next_id = 1
    for value in sorted(names):
        comp, n = ndimage.label(labels == value, structure=structure)
        fg = comp > 0
        inst[fg] = comp[fg] + (next_id - 1)
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
    """COCO run-length encoding (compressed counts) as a JSON string."""
    rle = cocomask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return json.dumps({"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")})


def decode_rle(text: str) -> np.ndarray:
    rle = json.loads(text)
    return cocomask.decode({"size": rle["size"], "counts": rle["counts"].encode("ascii")}).astype(bool)


def describe(mask: np.ndarray) -> RegionShape:
    ys, xs = np.nonzero(mask)
    return RegionShape(area_px=int(xs.size),
                       bbox=[float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)],
                       centroid=[float(xs.mean()), float(ys.mean())], rle=encode_rle(mask))


def min_area(width: int, height: int, min_pixels: int, min_fraction: float) -> int:
    return max(min_pixels, int(np.ceil(min_fraction * width * height)))
