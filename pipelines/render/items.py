"""Render the selected items only: re-decode each source sample once, cut the planes its items show,
bring them to display geometry, draw the marks, write one PNG per item.

Work is grouped by sample, so memory is bounded by one volume per worker (``benchmark.render_workers``
processes). Files go to a staging folder swapped in whole, so a failed run leaves the previous
rendering untouched.

One dataset's trouble stays its own: a sample that cannot be rendered (its source changed since it was
described, it no longer decodes) makes its dataset *stale*. That sample's items keep the image of the
last good rendering when there is one (same item, same display size), else they are left out; every
other item, of this dataset and the others, is rendered as usual.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from pipelines import PIPELINE_VERSION
from pipelines.config import PipelineConfig
from pipelines.errors import SampleError
from pipelines.ids import derived_rng
from pipelines.imageio import decode_png, encode_png, mirror_key
from pipelines.processes import ordered_map
from pipelines.records import RENDERED_ITEMS, to_table
from pipelines.render.boxes import box_letters, draw_lettered_boxes
from pipelines.render.draw import draw_outlines, draw_prompt, mark_pixels
from pipelines.render.perturb import LEVELS, perturb
from pipelines.source import Source
from pipelines.standardize.display import (
    display_size,
    mask_to_display,
    phash_hex,
    to_display,
)
from pipelines.standardize.regions import decode_rle
from pipelines.standardize.run import SamplePlanes
from pipelines.storage import atomic_write_bytes, sha256_bytes, staged_dir


@dataclass
class SampleJob:
    """Everything needed to render the items of one source sample."""

    sample: dict  # the raw_samples row (what the reader needs)
    source: Source
    slices: dict[str, dict]  # image_id -> slice row
    items: list[dict]  # item_id, granularity, image_id, members (region rows: kind, bbox, mask_rle, ...)
    staging: Path
    rel_root: str


def _mark(members: list[dict], granularity: str, geo) -> tuple[np.ndarray | None, list[float] | None]:
    """The display mask (mask/contour) or display box (box) of an item's target."""
    if granularity in ("mask", "contour"):
        m0 = members[0]
        stored = np.zeros((m0["height"], m0["width"]), bool)
        for m in members:
            stored |= decode_rle(m["mask_rle"], m["height"], m["width"])
        mask = mask_to_display(stored, geo)
        if not mask.any():
            raise ValueError(f"mark of {m0['name']} vanishes at display size; the gates should have dropped it")
        return mask, None
    if granularity == "box":
        b = np.array([m["bbox"] for m in members])
        return None, geo.box([b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()])
    return None, None


def _marks(it: dict, geo, palette: dict) -> list[tuple[np.ndarray, tuple]]:
    """[(display mask, colour)] of a generated item's coloured outlines, in the order the stem names them."""
    regions = {m["region_id"]: m for m in it["members"]}
    out = []
    for mark in it["params"]["marks"]:
        mask, _ = _mark([regions[r] for r in mark["regions"]], "contour", geo)
        out.append((mask, tuple(palette[mark["colour"]])))
    return out


def _draw(shown: np.ndarray, it: dict, geo, config: PipelineConfig, seed_key: str) -> tuple[np.ndarray, dict]:
    """The item's image: perturbed (robustness copies), mirrored (consistency copies that say so), then marked.
    Reads of ``it`` only what :func:`_drawn_from` lists, and the id of a perturbed copy."""
    params: dict = {}
    variant = it["variant"]
    if variant and variant["kind"] in LEVELS:  # consistency copies (as shown, mirrored) are not perturbed
        shown, params["perturbation"] = perturb(shown, variant["kind"], variant["severity"],
                                                derived_rng(config.seed, "perturb", seed_key))
    mirror = bool(it["params"] and it["params"].get("mirrored"))
    if it["params"] and it["params"].get("generator") == "localisation":
        boxes = [geo.box(b) for b in it["params"]["boxes"]]
        img, drawn = draw_lettered_boxes(shown, boxes, box_letters(it["answer"], len(boxes)), config.render)
        return img, {**params, **drawn}
    if it["params"] and it["params"].get("marks"):
        marks = _marks(it, geo, config.generators.palette)
        if mirror:
            shown, marks = shown[:, ::-1], [(m[:, ::-1], c) for m, c in marks]
        img, drawn = draw_outlines(shown, marks, config.render)
        return img, {**params, **drawn, "mirrored": mirror}
    mask, box = _mark(it["members"], it["granularity"], geo)
    img, drawn = draw_prompt(shown, it["granularity"], config.render, mask=mask, bbox=box)
    return img, {**params, **drawn}


def _drawn_from(it: dict) -> str | None:
    """What :func:`_draw` reads of an item, but its id, as text (keep the two together): two items of a plane with
    the same text get the same picture, which is then drawn, encoded and measured once. Such twins are common:
    counts of different structures on one unmarked slice, the 'as shown' consistency copy of an item. None for a
    perturbed copy, whose noise is seeded by its own id."""
    variant, params = it["variant"], it["params"] or {}
    if variant and variant["kind"] in LEVELS:
        return None
    boxes = [params.get("boxes"), it["answer"]] if params.get("generator") == "localisation" else None  # + letters
    return json.dumps([it["image_id"], it["granularity"], bool(params.get("mirrored")), boxes, params.get("marks"),
                       [m["region_id"] for m in it["members"]]], sort_keys=True, default=str)


def prompt_colours(config: PipelineConfig) -> list[tuple[int, int, int]]:
    """Every colour a mark can be drawn in (the contrast palette of single marks and boxes, the generators' named
    outline colours)."""
    return list(dict.fromkeys([*(tuple(c) for c in config.render.mark_palette.values()),
                               *(tuple(c) for c in config.generators.palette.values())]))


def render_sample(job: SampleJob, config: PipelineConfig) -> list[dict]:
    """Rows of RENDERED_ITEMS for one sample's items (PNG files written under the staging folder)."""
    planes = SamplePlanes(job.sample, job.source, config)
    by_image: dict[str, list[dict]] = defaultdict(list)
    for it in job.items:
        by_image[it["image_id"]].append(it)
    rows = []
    colours = prompt_colours(config)
    folder = job.staging / job.source.id
    folder.mkdir(parents=True, exist_ok=True)
    for sl, rgb in planes.rgb_each([job.slices[i] for i in sorted(by_image)]):
        geo = display_size(sl["width"], sl["height"], sl["spacing"], config.display.max_image_side)
        shown = to_display(rgb, geo)
        drawn: dict[str, tuple[bytes, dict]] = {}  # this plane's pictures by what they are drawn from
        for it in sorted(by_image[sl["image_id"]], key=lambda r: r["item_id"]):
            key = _drawn_from(it)
            if key is None or key not in drawn:
                img, params = _draw(shown, it, geo, config, it["item_id"])
                img = np.ascontiguousarray(img)
                params["display_scale"] = [round(geo.scale_x, 6), round(geo.scale_y, 6)]
                data = encode_png(img, config.render.png_level, config.render.png_filter)
                facts = {"width": int(img.shape[1]), "height": int(img.shape[0]),
                         "render_params": json.dumps(params, sort_keys=True), "sha256": sha256_bytes(data),
                         "phash": phash_hex(img), "mark_pixels": mark_pixels(img, colours), "mirror_key": mirror_key(img)}
                drawn[key or it["item_id"]] = data, facts
            data, facts = drawn[key or it["item_id"]]
            name = f"{it['item_id']}.png"
            (folder / name).write_bytes(data)  # the staging folder is swapped in whole: no file is seen half-written
            rows.append({"item_id": it["item_id"], "image_path": f"{job.rel_root}/{job.source.id}/{name}", **facts,
                         "dataset_id": job.source.id, "source_path": job.sample["source_path"],
                         "pipeline_version": PIPELINE_VERSION, "seed": config.seed})
    return rows


def _run(args: tuple[SampleJob, PipelineConfig]) -> tuple[list[dict], str]:
    """(rows, '') or ([], why the sample could not be rendered): one sample's failure never ends the step."""
    job, config = args
    try:
        return render_sample(job, config), ""
    except (SampleError, OSError, RuntimeError, ValueError, KeyError, IndexError, TypeError) as exc:
        return [], f"{job.sample['source_path']}: {type(exc).__name__}: {exc}"


@dataclass
class StaleDataset:
    """A dataset whose items could not all be rendered from its described state."""

    reason: str  # the first failure
    samples: int = 0  # samples that failed
    reused: int = 0  # items shown with the image of the last good rendering
    left_out: list[str] = field(default_factory=list)  # items without an image (no last good one)

    def as_dict(self) -> dict:
        return {"reason": self.reason, "samples": self.samples, "reused": self.reused,
                "left_out": len(self.left_out)}


@dataclass
class RenderResult:
    table: pa.Table
    stale: dict[str, StaleDataset] = field(default_factory=dict)


def _last_good(previous: pd.DataFrame | None, previous_root: Path, item_ids: list[str], sizes: dict[str, tuple],
               staging: Path, rel_root: str) -> tuple[list[dict], list[str]]:
    """Rows of the last good rendering for these items (their PNGs copied into the staging folder), and the
    items that have none. An earlier PNG counts only when it exists and has the item's current display size."""
    rows, missing = [], []
    by_id = previous.set_index("item_id", drop=False) if previous is not None and len(previous) else None
    for item_id in item_ids:
        row = by_id.loc[item_id].to_dict() if by_id is not None and item_id in by_id.index else None
        src = previous_root / row["image_path"] if row else None
        if row is None or not src.is_file() or (row["width"], row["height"]) != sizes.get(item_id, (None, None)) \
                or not str(row["image_path"]).startswith(f"{rel_root}/"):
            missing.append(item_id)
            continue
        data = src.read_bytes()
        if sha256_bytes(data) != row["sha256"]:
            missing.append(item_id)
            continue
        atomic_write_bytes(staging / Path(row["image_path"]).relative_to(rel_root), data)
        if not isinstance(row.get("mirror_key"), str):  # a table written before the column existed
            row["mirror_key"] = mirror_key(decode_png(data))
        rows.append(row)
    return rows, missing


@dataclass
class DatasetTables:
    """A dataset's described rows, as the render step needs them."""

    source: Source
    samples: pd.DataFrame
    slices: pd.DataFrame
    regions: pd.DataFrame


def render_items(items: pd.DataFrame, datasets: dict[str, DatasetTables],
                 config: PipelineConfig, out_dir: Path, rel_root: str = "rendered",
                 previous: pd.DataFrame | None = None, sizes: dict[str, tuple[int, int]] | None = None) -> RenderResult:
    """Render every benchmark item (``items``: item_id, dataset_id, image_id, granularity, source_region_ids,
    generator_params, variant) into ``out_dir``. ``previous`` is the last rendered_items table (rows whose
    image_path lies under ``out_dir``'s parent) and ``sizes`` each item's display (width, height): items of a
    sample that cannot be rendered fall back on them (see the module docstring)."""
    jobs: list[SampleJob] = []
    with staged_dir(out_dir) as staging:
        for ds, part in items.groupby("dataset_id", sort=True):
            t = datasets[ds]
            slices = t.slices.set_index("image_id", drop=False)
            regions = t.regions.set_index("region_id", drop=False)
            samples = t.samples.set_index("sample_id", drop=False)
            part = part.assign(sample_id=slices.loc[part["image_id"], "sample_id"].to_numpy())
            wanted = sorted({m for ids in part["source_region_ids"] for m in ids})
            members = dict(zip(wanted, regions.loc[wanted].to_dict("records")))  # one conversion, not one per item
            for sample_id, its in part.groupby("sample_id", sort=True):
                needed = slices.loc[sorted(set(its["image_id"]))]
                work = [{"item_id": r.item_id, "granularity": r.granularity, "image_id": r.image_id,
                         "answer": getattr(r, "answer", None),
                         "members": [members[m] for m in r.source_region_ids],
                         "params": json.loads(r.generator_params) if isinstance(r.generator_params, str) else None,
                         "variant": json.loads(r.variant) if isinstance(r.variant, str) else None}
                        for r in its.itertuples(index=False)]
                jobs.append(SampleJob(samples.loc[sample_id].to_dict(), t.source,
                                      dict(zip(needed.index, needed.to_dict("records"))), work, staging, rel_root))
        jobs.sort(key=lambda j: -len(j.items))  # largest first: the workers finish close together (stable)
        outputs = list(ordered_map(_run, [(j, config) for j in jobs], config.benchmark.render_workers,
                                   release=True))
        stale: dict[str, StaleDataset] = {}
        rows = [r for out, _ in outputs for r in out]
        for job, (_, why) in zip(jobs, outputs):
            if not why:
                continue
            ds = job.source.id
            entry = stale.setdefault(ds, StaleDataset(reason=why))
            entry.samples += 1
            reused, missing = _last_good(previous, Path(out_dir).parent, [it["item_id"] for it in job.items],
                                         sizes or {}, staging, rel_root)
            rows += reused
            entry.reused += len(reused)
            entry.left_out += missing
            for item_id in missing:  # a PNG the failed sample wrote before it failed is not kept
                (staging / ds / f"{item_id}.png").unlink(missing_ok=True)
    rows = sorted(rows, key=lambda r: r["item_id"])
    return RenderResult(to_table(rows, RENDERED_ITEMS), stale)
