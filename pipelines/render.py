"""Visual prompts: the image a question shows, at each perceptual granularity a region supports.

* image regions (classification) -> ``image``: the slice itself, no overlay
* box regions (detection)        -> ``box``: an opaque rectangle ring just outside the box
* mask regions (segmentation)    -> ``mask`` (alpha fill exactly on the mask pixels) and
  ``contour`` (an opaque ring just outside the mask boundary); the two are twins.

Lines sit outside the region so the structure's own edge stays visible. Thickness scales with
the image (``line_fraction`` of the shorter side, at least ``min_thickness``). When a region's
surroundings are red (endoscopy, dermoscopy, histopathology) the alternative colour is used,
and the choice is recorded. Regions too thin to see, or lying wholly in the image's edge band,
are flagged instead of drawn.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa

from pipelines import PIPELINE_VERSION
from pipelines.config import PipelineConfig, RenderSettings
from pipelines.ids import stable_id
from pipelines.imageio import encode_png
from pipelines.records import PROMPTED_IMAGES, to_table
from pipelines.standardize.regions import decode_rle
from pipelines.storage import DataLayout, atomic_write_bytes, staged_dir

GRANULARITIES = {"image": ("image",), "box": ("box",), "mask": ("mask", "contour")}


def thickness(width: int, height: int, s: RenderSettings) -> int:
    return max(s.min_thickness, int(round(s.line_fraction * min(width, height))))


def surroundings_are_red(rgb: np.ndarray, bbox: list[float], t: int, s: RenderSettings) -> bool:
    """Mean colour of a ring around the region's box (twice the line width, at least 4 px)."""
    h, w = rgb.shape[:2]
    pad = max(4, 2 * t)
    x0, y0, x1, y1 = (int(v) for v in bbox)
    outer = np.zeros((h, w), bool)
    outer[max(0, y0 - pad):min(h, y1 + pad), max(0, x0 - pad):min(w, x1 + pad)] = True
    outer[y0:y1, x0:x1] = False
    if not outer.any():
        outer[:] = True
    r, g, b = (rgb[..., c][outer].mean() for c in range(3))
    return bool(r > s.red_surroundings_ratio * max(g, b, 1.0))


def draw_mask(rgb: np.ndarray, mask: np.ndarray, color, alpha: float) -> np.ndarray:
    out = rgb.copy()
    blend = rgb[mask].astype(np.float64) * (1 - alpha) + np.array(color, np.float64) * alpha
    out[mask] = np.clip(np.rint(blend), 0, 255).astype(np.uint8)
    return out


def contour_ring(mask: np.ndarray, t: int) -> np.ndarray:
    """Pixels within t (chessboard distance) outside the mask: the drawn outline."""
    grown = cv2.dilate(mask.astype(np.uint8), np.ones((2 * t + 1, 2 * t + 1), np.uint8)) > 0
    return grown & ~mask


def box_ring(shape: tuple[int, int], bbox: list[float], t: int) -> np.ndarray:
    h, w = shape
    x0, y0, x1, y1 = (int(round(v)) for v in bbox)
    ring = np.zeros((h, w), bool)
    ring[max(0, y0 - t):min(h, y1 + t), max(0, x0 - t):min(w, x1 + t)] = True
    ring[max(0, y0):min(h, y1), max(0, x0):min(w, x1)] = False
    return ring


def paint(rgb: np.ndarray, where: np.ndarray, color) -> np.ndarray:
    out = rgb.copy()
    out[where] = color
    return out


def flag_for(bbox: list[float], width: int, height: int, s: RenderSettings) -> str:
    x0, y0, x1, y1 = bbox
    if min(x1 - x0, y1 - y0) < s.min_visible_side:
        return "too_small"
    band_x, band_y = max(4, s.border_band_fraction * width), max(4, s.border_band_fraction * height)
    if x1 <= band_x or x0 >= width - band_x or y1 <= band_y or y0 >= height - band_y:
        return "border_only"
    return ""


@dataclass
class Target:
    """One thing to draw: an instance, or all instances of a label on one image."""

    region_id: str
    members: list[dict]
    scope: str

    @property
    def kind(self) -> str:
        return self.members[0]["kind"]

    @property
    def labels(self) -> list[str]:
        return list(self.members[0]["labels"])

    @property
    def bbox(self) -> list[float]:
        b = np.array([m["bbox"] for m in self.members])
        return [float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()), float(b[:, 3].max())]

    def mask(self) -> np.ndarray:
        m0 = self.members[0]
        out = np.zeros((m0["height"], m0["width"]), bool)
        for m in self.members:
            out |= decode_rle(m["mask_rle"], m["height"], m["width"])
        return out


def targets_for(regions: list[dict], scope: str) -> list[Target]:
    """Group mask regions by (image, label) for label scope; boxes and images stay single."""
    out: list[Target] = []
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in regions:
        if r["kind"] != "mask":
            out.append(Target(r["region_id"], [r], "image" if r["kind"] == "image" else "instance"))
            continue
        groups[(r["image_id"], r["raw_label"])].append(r)
    for (_, _), members in sorted(groups.items()):
        members.sort(key=lambda m: m["component_index"])
        if len(members) == 1:
            out.append(Target(members[0]["region_id"], members, "instance"))
            continue
        if scope in ("label", "both"):
            out.append(Target(stable_id("label-group", *[m["region_id"] for m in members]), members, "label"))
        if scope in ("instance", "both"):
            out.extend(Target(m["region_id"], [m], "instance") for m in members)
    return out


def render_image(rgb: np.ndarray, target: Target, granularity: str, s: RenderSettings) -> tuple[np.ndarray, dict]:
    h, w = rgb.shape[:2]
    t = thickness(w, h, s)
    red = surroundings_are_red(rgb, target.bbox, t, s)
    color = tuple(s.alt_color if red else s.color)
    params = {"color": list(color), "red_surroundings": red, "thickness": t}
    if granularity == "mask":
        params = {"color": list(color), "red_surroundings": red, "alpha": s.alpha}
        return draw_mask(rgb, target.mask(), color, s.alpha), params
    if granularity == "contour":
        return paint(rgb, contour_ring(target.mask(), t), color), params
    if granularity == "box":
        return paint(rgb, box_ring((h, w), target.bbox, t), color), params
    raise ValueError(granularity)


def render_dataset(dataset_id: str, slices: pa.Table, regions: pa.Table, config: PipelineConfig,
                   data_root: Path) -> pa.Table:
    """Render every target of a dataset; PNGs are swapped in as a whole when done."""
    layout = DataLayout(data_root)
    s = config.render
    by_image: dict[str, list[dict]] = defaultdict(list)
    for r in regions.to_pylist():
        by_image[r["image_id"]].append(r)
    slice_rows = {r["image_id"]: r for r in slices.to_pylist()}
    rows = []
    with staged_dir(layout.prompts(dataset_id)) as staging:
        for image_id in sorted(by_image):
            sl = slice_rows[image_id]
            rgb = None
            stem = sl["png_path"].removeprefix(f"images/{dataset_id}/").removesuffix(".png")
            for target in targets_for(by_image[image_id], s.scope):
                twin = stable_id("twin", target.region_id) if target.kind == "mask" else None
                for gran in GRANULARITIES[target.kind]:
                    flag, params, rel = "", {}, sl["png_path"]
                    if gran != "image":
                        flag = flag_for(target.bbox, sl["width"], sl["height"], s)
                        rel = ""
                        if not flag:
                            if rgb is None:
                                rgb = cv2.cvtColor(cv2.imread(str(data_root / sl["png_path"])), cv2.COLOR_BGR2RGB)
                            img, params = render_image(rgb, target, gran, s)
                            label = "+".join(target.labels).replace("/", "_").replace(" ", "_")
                            name = f"{stem}/{label}-{target.scope}-{target.region_id[:6]}_{gran}.png"
                            atomic_write_bytes(staging / name, encode_png(img))
                            rel = f"prompts/{dataset_id}/{name}"
                    rows.append({
                        "prompt_id": stable_id(target.region_id, gran), "region_id": target.region_id,
                        "member_region_ids": [m["region_id"] for m in target.members], "image_id": image_id,
                        "sample_id": sl["sample_id"], "group_id": sl["group_id"], "scope": target.scope,
                        "labels": target.labels, "twin_id": twin, "granularity": gran,
                        "render_params": json.dumps(params, sort_keys=True), "flag": flag, "png_path": rel,
                        "width": sl["width"], "height": sl["height"], "dataset_id": dataset_id,
                        "source_path": sl["source_path"], "pipeline_version": PIPELINE_VERSION,
                        "seed": config.seed})
    rows.sort(key=lambda r: r["prompt_id"])
    return to_table(rows, PROMPTED_IMAGES)
