"""What a reader sees on a plane, from the stored masks of a bounded set of sampled planes: how many separate
pieces each region shows in 2D (a 3D instance can cross a plane more than once), the longest diameter of
single-piece regions, and how many separate cross-sections each counted structure shows (the union of its raw
labels, so touching pieces count once, as they look). One plane's masks are held at a time."""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
import pandas as pd

from pipelines.candidates.generators.measure import ellipse_major, feret_mm
from pipelines.config import PipelineConfig
from pipelines.standardize.regions import decode_rle


@dataclass
class PlaneFacts:
    pieces: dict[str, int] = field(default_factory=dict)  # region id -> 2D connected pieces
    feret: dict[str, float] = field(default_factory=dict)  # single-piece region id -> longest length (mm; px when the
    # plane's pixel size is unknown): hull diameter, or the fitted ellipse's major axis of a filled outline
    counts: dict[tuple[str, str], tuple[int, bool, list[str], bool]] = field(default_factory=dict)
    # (image id, canonical) -> (cross-sections, any of them too small to see, region ids, any two of them (or one
    # and the image border) closer than a reader can tell apart)


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(x, y, w, h) of the mask's pixels (w = h = 0 when it has none), whatever the mask's memory order."""
    m = mask.view(np.uint8) if mask.dtype == bool else mask.astype(np.uint8)
    if m.flags.f_contiguous and not m.flags.c_contiguous:  # a decoded RLE is column-major: its transpose is not
        y, x, h, w = cv2.boundingRect(m.T)  # copied to find the box
        return x, y, w, h
    return cv2.boundingRect(np.ascontiguousarray(m))


def _components(mask: np.ndarray, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Pixel areas of the 8-connected pieces of a mask (in OpenCV's labelling order; callers count them and
    compare each with a threshold). Labelled inside the mask's bounding box (``box``, when known): the pieces are
    those of the whole plane, for a fraction of the pixels (an organ covers a small part of a CT plane)."""
    x, y, w, h = box if box is not None else _box(mask)
    if w == 0 or h == 0:
        return np.zeros(0, np.int32)
    crop = mask[y:y + h, x:x + w]
    crop = crop.view(np.uint8) if crop.dtype == bool else crop.astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(np.ascontiguousarray(crop), connectivity=8)
    return stats[1:n, cv2.CC_STAT_AREA]


def count_gap(display_width: float, display_height: float, q) -> float:
    """The background a reader needs to see between two pieces, or between a piece and the border (display px)."""
    return max(float(q.count_gap_px), q.count_gap_fraction * min(display_width, display_height))


def crowded(mask: np.ndarray, gap_x: float, gap_y: float, box: tuple[int, int, int, int] | None = None) -> bool:
    """True when two pieces of ``mask`` lie closer than the gap (in stored pixels, per axis), or a piece comes
    within the gap of the image border: then how many there are is not something a reader can count. Read off
    the mask's bounding box (``box``, when known), grown by half the gap: nothing outside it can join two pieces."""
    h, w = mask.shape
    bx, by = int(np.ceil(gap_x)), int(np.ceil(gap_y))
    x, y, bw, bh = box = box if box is not None else _box(mask)
    if bw == 0 or bh == 0:
        return False
    if y < by or y + bh > h - by or x < bx or x + bw > w - bx:  # a piece within the gap of a border
        return True
    n = len(_components(mask, box))
    if n < 2:
        return False
    rx, ry = int(np.ceil(gap_x / 2)), int(np.ceil(gap_y / 2))
    x0, y0 = max(x - rx, 0), max(y - ry, 0)
    near = mask[y0:min(y + bh + ry, h), x0:min(x + bw + rx, w)]
    grown = cv2.dilate(np.ascontiguousarray(near, np.uint8), np.ones((2 * ry + 1, 2 * rx + 1), np.uint8))
    return len(_components(grown)) < n


def _union(masks: dict[str, np.ndarray], rids: list[str], boxes: dict[str, tuple[int, int, int, int]], h: int,
           w: int) -> tuple[np.ndarray, tuple[int, int, int, int] | None]:
    """The plane's mask of the regions ``rids`` (those decoded), and its pixels' box when every one of them has a
    recorded box (the masks are joined inside the box around theirs alone, and the pixels' box is looked for
    there), else None."""
    union = np.zeros((h, w), bool)
    have = [rid for rid in rids if rid in masks]
    if not have or any(rid not in boxes for rid in have):
        for rid in have:
            union |= masks[rid]
        return union, None
    spans = [boxes[rid] for rid in have]
    spans = [b for b in spans if b[2] > 0 and b[3] > 0]
    if not spans:
        return union, (0, 0, 0, 0)
    x0, y0 = min(b[0] for b in spans), min(b[1] for b in spans)
    x1, y1 = max(b[0] + b[2] for b in spans), max(b[1] + b[3] for b in spans)
    inside = union[y0:y1, x0:x1]
    for rid in have:
        inside |= masks[rid][y0:y1, x0:x1]
    x, y, bw, bh = _box(inside)
    return union, (x0 + x, y0 + y, bw, bh) if bw and bh else (0, 0, 0, 0)


def plane_facts(regions: pd.DataFrame, planes: pd.DataFrame, rle: dict[str, str], canonical: dict[str, str],
                exhaustive: frozenset[str], measure_planes: set[str], config: PipelineConfig) -> PlaneFacts:
    """Facts of the given mask regions (all on sampled planes); ``planes`` is plane_frame's table. Plain
    Python over one sort of the rows: a pandas group per plane costs more than the masks themselves."""
    g, facts = config.gates, PlaneFacts()
    geo = planes.set_index("image_id")[["height", "width", "scale", "scale_y", "sx", "sy", "display_width",
                                        "display_height"]].to_dict("index")
    rows = regions[["image_id", "region_id", "raw_label"]].sort_values(["image_id", "region_id"], kind="stable")
    image_ids, region_ids, raws = (rows[c].tolist() for c in ("image_id", "region_id", "raw_label"))
    outlines = set(regions.loc[regions["outline_filled"].fillna(False).astype(bool), "region_id"]) \
        if "outline_filled" in regions else set()
    # each region's recorded box (describe measured it on the pixels its RLE holds): its pieces are labelled
    # there without looking for the box over the whole plane first
    boxes = {rid: (int(b[0]), int(b[1]), int(b[2] - b[0]), int(b[3] - b[1]))
             for rid, b in zip(regions["region_id"].tolist(), regions["bbox"].tolist())} if "bbox" in regions else {}
    start = 0
    while start < len(image_ids):
        image_id = image_ids[start]
        end = start
        while end < len(image_ids) and image_ids[end] == image_id:
            end += 1
        p = geo[image_id]
        h, w = int(p["height"]), int(p["width"])
        masks = {rid: decode_rle(rle[rid], h, w) for rid in region_ids[start:end] if rid in rle}
        for rid, m in masks.items():
            facts.pieces[rid] = len(_components(m, boxes.get(rid)))
            if facts.pieces[rid] == 1 and image_id in measure_planes:
                sx, sy = (float(p["sx"]), float(p["sy"])) if np.isfinite(p["sx"]) else (1.0, 1.0)
                facts.feret[rid] = (ellipse_major if rid in outlines else feret_mm)(m, sx, sy)
        counted: dict[str, list[str]] = {}
        for rid, raw in zip(region_ids[start:end], raws[start:end]):
            if raw in exhaustive and raw in canonical:
                counted.setdefault(canonical[raw], []).append(rid)
        for canon in sorted(counted):
            union, ubox = _union(masks, counted[canon], boxes, h, w)
            areas = _components(union, ubox) * float(p["scale"]) * float(p["scale_y"])
            hidden = bool(((areas < g.min_mark_pixels) | (areas < g.min_mark_fraction * p["display_width"]
                                                             * p["display_height"])).any())
            gap = count_gap(p["display_width"], p["display_height"], config.questions)
            close = crowded(union, gap / float(p["scale"]), gap / float(p["scale_y"]), ubox)
            facts.counts[(image_id, canon)] = (len(areas), hidden, sorted(counted[canon]), close)
        start = end
    return facts


def fact_jobs(regions: pd.DataFrame, planes: pd.DataFrame, rle: dict[str, str], canonical: dict[str, str],
              exhaustive: frozenset[str], measure_planes: set[str], config: PipelineConfig, workers: int) -> list[tuple]:
    """:func:`plane_facts` arguments cut into runs of image ids, two runs per worker so that one slow run does not
    hold the rest (one run when ``workers`` is 1): every fact is one plane's own, so the :func:`merged` facts of
    the runs are those of one call. Each run carries only its planes' rows and masks."""
    ids = sorted(set(regions["image_id"]))
    n = min(len(ids), 2 * workers) if workers > 1 else 1
    if n <= 1:
        return [(regions, planes, rle, canonical, exhaustive, measure_planes, config)]
    jobs = []
    for k in range(n):
        part = set(ids[k * len(ids) // n:(k + 1) * len(ids) // n])
        rows = regions[regions["image_id"].isin(part)]
        jobs.append((rows, planes[planes["image_id"].isin(part)],
                     {r: rle[r] for r in rows["region_id"] if r in rle}, canonical, exhaustive,
                     measure_planes & part, config))
    return jobs


def merged(parts: list[PlaneFacts]) -> PlaneFacts:
    facts = PlaneFacts()
    for f in parts:
        facts.pieces.update(f.pieces)
        facts.feret.update(f.feret)
        facts.counts.update(f.counts)
    return facts
