"""Describe raw samples as rows: slices (8-bit planes) and regions (one per connected instance).

Each plane is windowed in memory and described by its display geometry, perceptual hash and
contrast; no PNG is written unless ``standardize.write_pngs`` is 'all' (the full SA-Med2D-style
corpus). The selected items are rendered later from the same planes (:func:`canonical_volume`).
Memory is bounded by one volume per worker: samples are processed one at a time (or one per
process with ``workers > 1``).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import SimpleITK as sitk

from pipelines import PIPELINE_VERSION
from pipelines.config import PipelineConfig, StandardizeSettings
from pipelines.geometry import HEADER, UNKNOWN, plane_spacing_2d
from pipelines.ids import stable_id
from pipelines.imageio import encode_png
from pipelines.ingest import quarantine_row, reader_for
from pipelines.processes import ordered_map
from pipelines.records import QUARANTINE, REGIONS, SLICES, to_table
from pipelines.source import Source
from pipelines.sourcefiles import with_timeout
from pipelines.sources.base import LoadedSample, Quarantined, Reason, SampleError
from pipelines.standardize import intensity
from pipelines.standardize.display import display_size, grey, phash_stack
from pipelines.standardize.outlines import fill_outlines
from pipelines.standardize.planes import (
    chunks,
    occupied_indices,
    plane,
    plane_spacing,
    stack,
)
from pipelines.standardize.regions import (
    StackRegions,
    describe_instances,
    describe_stack,
    label_instances,
    min_area,
    ring_cnr,
)
from pipelines.storage import DataLayout, atomic_write_bytes, sha256_bytes, staged_dir
from pipelines.volume import (
    check_grid,
    check_oblique,
    orientation_code,
    reorient,
    resample_axis_aligned,
)


@dataclass
class SampleOutput:
    slices: list[dict] = field(default_factory=list)
    regions: list[dict] = field(default_factory=list)
    quarantine: list[dict] = field(default_factory=list)
    dropped_small: int = 0
    masks: dict[str, list] = field(default_factory=lambda: defaultdict(list))  # 3D mask regions, column-wise

    def region_table(self, prov: dict) -> pa.Table:
        """All region rows as one table: the row-wise ones plus the column-wise 3D masks (cheaper per row: a
        CT volume has thousands)."""
        table = to_table(self.regions, REGIONS)
        n = len(self.masks.get("region_id", []))
        if not n:
            return table
        cols = {**self.masks, "kind": ["mask"] * n, "labels": [[lab] for lab in self.masks["raw_label"]],
                "outline_filled": [False] * n,
                **{k: [v] * n for k, v in prov.items()}}
        cols["area_pct"] = [100.0 * a / (wd * h) for a, wd, h in zip(cols["area_px"], cols["width"], cols["height"])]
        return pa.concat_tables([table, pa.Table.from_pydict({k: cols[k] for k in REGIONS.names}, schema=REGIONS)])


@dataclass
class StandardizeResult:
    slices: pa.Table
    regions: pa.Table
    quarantine: pa.Table
    dropped_small: int

    @property
    def reason_counts(self) -> dict[str, int]:
        return dict(Counter(self.quarantine.column("reason_code").to_pylist()))


def provenance(row: dict, config: PipelineConfig) -> dict:
    """The columns every slice and region row of one sample shares."""
    return {"dataset_id": row["dataset_id"], "source_path": row["source_path"], "pipeline_version": PIPELINE_VERSION,
            "seed": config.seed, "sample_id": row["sample_id"], "group_id": row["group_id"]}


class _Writer:
    """Builds slice and region rows for one sample (and its PNGs under the staging root when the slice corpus
    is asked for: standardize.write_pngs 'all')."""

    def __init__(self, row: dict, source: Source, config: PipelineConfig, staging: Path, rel_root: str):
        self.row, self.source, self.config = row, source, config
        self.staging, self.rel_root = staging, rel_root
        self.case = f"{row['name']}-{row['sample_id'][:6]}"
        self.out = SampleOutput()
        self.prov = provenance(row, config)


    def image(self, pixels: np.ndarray, axis: str, index: int, t: intensity.Transform, orientation: str,
              original: str, spacing: list[float], described: PlaneFacts | None = None,
              faint: list[str] | None = None) -> str:
        """One slice row (and its PNG when the corpus is asked for); ``described`` carries the pHash, contrast
        and sha256 when they were computed for a whole stack of planes at once; ``faint`` names the labels with
        a cross-section below the region floor on this plane (specks the rows do not hold)."""
        stem = f"{axis}_{index:04d}" + ("" if t.key in ("identity", "bit_depth", "percentile_clip") else f"_{t.key}")
        rel = ""
        if self.config.standardize.write_pngs == "all":
            rel = f"{self.rel_root}/{self.case}/{stem}.png"
            atomic_write_bytes(self.staging / self.case / f"{stem}.png", encode_png(intensity.to_rgb(pixels)))
        facts = described or plane_facts(grey(pixels)[None])[0]
        geo = display_size(pixels.shape[1], pixels.shape[0], spacing, self.config.display.max_image_side)
        image_id = stable_id(self.row["sample_id"], axis, index, t.name, sorted(t.params.items()))
        self.out.slices.append({
            "image_id": image_id, "name": f"{self.row['dataset_id']}/{self.case}/{stem}", "modality": self.row["modality"],
            "axis": axis, "index": index, "orientation": orientation, "original_orientation": original,
            "spacing": [float(s) for s in spacing], "spacing_source": self.row.get("spacing_source") or
            (HEADER if spacing else UNKNOWN), "intensity_transform": t.name,
            "intensity_params": json.dumps(t.params, sort_keys=True), "width": int(pixels.shape[1]),
            "height": int(pixels.shape[0]), "display_width": geo.width, "display_height": geo.height,
            "phash": facts.phash, "contrast": facts.contrast, "png_path": rel,
            "sha256": sha256_bytes(pixels.tobytes()) if described is None else facts.sha256,
            "faint_labels": list(faint or []), "content_bbox": facts.content, **self.prov})
        return image_id

    def region(self, image_id: str, name: str, kind: str, labels: list[str], component: int, width: int,
               height: int, bbox: list[float], area: int, centroid: list[float], rle: str | None,
               outline_filled: bool = False) -> None:
        x0, y0, x1, y1 = bbox
        if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
            raise SampleError(Reason.BAD_ANNOTATION, f"region {name} bbox {bbox} is outside its {width}x{height} image")
        self.out.regions.append({
            "region_id": stable_id(image_id, kind, tuple(labels), component, tuple(bbox)), "image_id": image_id,
            "name": name, "kind": kind,
            "raw_label": ";".join(labels), "labels": labels, "component_index": component, "mask_rle": rle,
            "area_px": int(area), "area_pct": float(100.0 * area / (width * height)), "bbox": bbox,
            "centroid": centroid, "width": width, "height": height, "outline_filled": outline_filled,
            "ring_cnr": None, **self.prov})


def _window_of(source: Source, label: str) -> str | None:
    return source.label_map.spec(label).ct_window


@dataclass
class CanonicalVolume:
    """A sample's image and label layers reoriented to the canonical code (and resampled if asked)."""

    image: sitk.Image
    layers: list[tuple[sitk.Image, dict]]
    code: str
    original: str

    @property
    def array(self) -> np.ndarray:
        return sitk.GetArrayViewFromImage(self.image)


def canonical_volume(loaded: LoadedSample, cfg: StandardizeSettings, source_path: str) -> CanonicalVolume:
    """Reorient (no interpolation) and check that image and label grids agree; shared by describe and render.
    An oblique volume is first resampled onto the nearest axis-aligned grid (or refused), never read as if
    its axes were the patient's. Takes the loaded image and layers out of ``loaded``: each stored-orientation
    copy is let go as soon as its canonical one exists, so a worker never holds both copies of everything."""
    code = cfg.canonical_orientation
    original = orientation_code(loaded.image.GetDirection())
    names = [layer.names for layer in loaded.layers]
    image, labels = loaded.image, [layer.data for layer in loaded.layers]
    loaded.image, loaded.layers = None, []
    if check_oblique(image, source_path, cfg.oblique, cfg.oblique_tolerance_deg):  # raises when quarantined
        for lab_img in labels:  # the labels must lie on the oblique grid before both are resampled
            check_grid(image, lab_img, source_path, cfg.grid_tolerance, code)
        image, labels, _ = resample_axis_aligned(image, labels)
    image = reorient(image, code)
    layers = []
    while labels:
        layers.append((reorient(labels.pop(0), code), names[len(layers)]))
    for lab_img, _ in layers:  # both already canonical: check_grid's own reorientation is a no-op
        check_grid(image, lab_img, source_path, cfg.grid_tolerance, code)
    if cfg.resample_isotropic:
        image, layers = _isotropic(image, layers)
    return CanonicalVolume(image, layers, code, original)


@dataclass(frozen=True)
class PlaneFacts:
    """What describe records of an 8-bit plane's pixels."""

    phash: str
    contrast: float
    sha256: str
    content: list[float]  # x0, y0, x1, y1 of the pixels brighter than CONTENT_LEVEL (the body, the field of view)


CONTENT_LEVEL = 20  # 8-bit grey above which a pixel is content: air, the black frame of a fundus or endoscopy image are not


def content_boxes(planes: np.ndarray) -> np.ndarray:
    """(n, 4) boxes of the content of each plane of an (n, h, w) grey stack (the whole plane when none)."""
    n, h, w = planes.shape
    bright = planes > CONTENT_LEVEL
    rows, cols = bright.any(axis=2), bright.any(axis=1)
    out = np.tile(np.array([0.0, 0.0, w, h]), (n, 1))
    has = rows.any(axis=1)
    out[has, 0] = cols[has].argmax(axis=1)
    out[has, 2] = w - cols[has][:, ::-1].argmax(axis=1)
    out[has, 1] = rows[has].argmax(axis=1)
    out[has, 3] = h - rows[has][:, ::-1].argmax(axis=1)
    return out


def plane_facts(planes: np.ndarray) -> list[PlaneFacts]:
    """pHash, contrast, sha256 and content box of each plane of an (n, h, w) 8-bit grey stack (one call per stack;
    every fact is its plane's own). The sha256 covers each plane's C-order bytes."""
    planes = np.ascontiguousarray(planes)
    hashes = phash_stack(planes)
    # OpenCV's std of each plane: 20-50x numpy's over a stack, equal to it to 1e-13 (the 3 decimals recorded)
    spread = [cv2.meanStdDev(p)[1][0, 0] for p in planes] if planes.size else [0.0] * len(planes)
    boxes = content_boxes(planes) if planes.size else np.zeros((len(planes), 4))
    return [PlaneFacts(h, round(float(c), 3), hashlib.sha256(p).hexdigest(), [float(v) for v in b])
            for h, c, p, b in zip(hashes, spread, planes, boxes)]


def _describe_axis(inst: np.ndarray, axis: str, floor: int) -> tuple[np.ndarray, StackRegions]:
    """Every instance on every occupied plane along ``axis``, a bounded stack of planes at a time; returns the
    plane index of each instance and the stacked description."""
    occupied = occupied_indices(inst > 0, axis)
    h, w = plane(inst, axis, 0).shape
    parts = [(idx, describe_stack(stack(inst, axis, idx), floor)) for idx in chunks(occupied, h * w)]
    index = np.concatenate([idx[d.plane] for idx, d in parts]) if parts else np.zeros(0, np.int64)
    cat = (lambda f, shape: np.concatenate([getattr(d, f) for _, d in parts]) if parts else np.zeros(shape))
    return index, StackRegions(plane=index, ids=cat("ids", 0).astype(np.int64), area=cat("area", 0),
                               bbox=cat("bbox", (0, 4)), centroid=cat("centroid", (0, 2)),
                               rle=[r for _, d in parts for r in d.rle], dropped=sum(d.dropped for _, d in parts),
                               faint_plane=(np.concatenate([idx[d.faint_plane] for idx, d in parts]) if parts
                                            else np.zeros(0, np.int64)),
                               faint_ids=cat("faint_ids", 0).astype(np.int64))


def _instances(canon: CanonicalVolume, connectivity: int) -> list[tuple[np.ndarray, dict]]:
    """Each label layer's instance array and table; a layer's label volume is let go once it has its instance
    array, so the worker holds one of the two at a time."""
    out = []
    while canon.layers:
        lab_img, names = canon.layers.pop(0)
        out.append(label_instances(np.asarray(sitk.GetArrayViewFromImage(lab_img)), names, connectivity))
        del lab_img
    return out


def _standardize_3d(w: _Writer, loaded: LoadedSample) -> None:
    cfg = w.config.standardize
    canon = canonical_volume(loaded, cfg, w.row["source_path"])  # takes the stored orientation's copies
    code, original = canon.code, canon.original
    spacing = canon.image.GetSpacing()
    vol = canon.array
    instances = _instances(canon, cfg.connectivity_3d)
    transforms: dict[str | None, intensity.Transform] = {}

    def transform_for(label: str) -> intensity.Transform:
        win = _window_of(w.source, label) if intensity.family(w.row["modality"]) == "ct" else None
        if win not in transforms:
            transforms[win] = intensity.choose(w.row["modality"], vol, cfg, win, loaded.photometric)
        return transforms[win]

    for axis in cfg.axes:
        h, wd = plane(vol, axis, 0).shape
        if min(h, wd) < cfg.min_plane_side:
            continue
        floor = min_area(wd, h, cfg.min_region_pixels, cfg.min_region_fraction)
        pending: dict[tuple[int, str], list] = defaultdict(list)  # (plane index, window) -> regions
        faint: dict[int, set[str]] = defaultdict(set)  # plane index -> labels with a sub-floor speck there
        for layer, (inst, table) in enumerate(instances):
            index, d = _describe_axis(inst, axis, floor)
            w.out.dropped_small += d.dropped
            for idx, iid in zip(d.faint_plane.tolist(), d.faint_ids.tolist()):
                faint[idx].add(table[iid][0])
            for idx, iid, bbox, area, centroid, rle in zip(index.tolist(), d.ids.tolist(), d.bbox.tolist(),
                                                            d.area.tolist(), d.centroid.tolist(), d.rle):
                label, comp = table[iid]
                pending[(idx, transform_for(label).key)].append((label, comp, bbox, area, centroid, rle,
                                                                 layer, iid))
        by_key = {t.key: t for t in transforms.values()}
        sp = plane_spacing(spacing, axis)
        keys = sorted({k for _, k in pending})
        wanted = {key: {i for i, k in pending if k == key} for key in keys}
        # one cut of the volume per bounded run of planes, each window applied to the planes it is wanted on: a
        # coronal or sagittal cut is a strided gather over the whole volume, once per window it cost 3x as much
        for idx in chunks(np.array(sorted(set().union(*wanted.values())), np.int64), h * wd):
            raw = np.ascontiguousarray(stack(vol, axis, idx))
            for key in keys:
                mine = [j for j, i in enumerate(idx.tolist()) if i in wanted[key]]
                if not mine:
                    continue
                t = by_key[key]
                pixels = t.apply_plane(raw if len(mine) == len(idx) else raw[mine])
                for i, px, facts in zip(idx[mine].tolist(), pixels, plane_facts(pixels)):
                    image_id = w.image(px, axis, i, t, code, original, sp, facts, sorted(faint[i]))
                    prefix = f"{w.row['dataset_id']}/{w.case}/{axis}_{i:04d}"
                    m = w.out.masks
                    shown = grey(px)
                    cut = {layer: plane(instances[layer][0], axis, i) for layer in {p[6] for p in pending[(i, key)]}}
                    for label, comp, bbox, area, centroid, rle, layer, iid in pending[(i, key)]:
                        m["region_id"].append(stable_id(image_id, "mask", (label,), comp, tuple(bbox)))
                        m["name"].append(f"{prefix}/{label}/{comp}")
                        m["raw_label"].append(label)
                        for col, v in (("image_id", image_id), ("component_index", comp), ("mask_rle", rle),
                                       ("area_px", area), ("bbox", bbox), ("centroid", centroid),
                                       ("width", wd), ("height", h),
                                       ("ring_cnr", ring_cnr(shown, cut[layer], iid, bbox))):
                            m[col].append(v)


def _isotropic(image: sitk.Image, layers: list) -> tuple[sitk.Image, list]:
    """Resample to the finest spacing on every axis (linear for pixels, nearest for labels)."""
    sp = min(image.GetSpacing())
    size = [int(round(n * s / sp)) for n, s in zip(image.GetSize(), image.GetSpacing())]

    def res(img: sitk.Image, interp) -> sitk.Image:
        return sitk.Resample(img, size, sitk.Transform(), interp, image.GetOrigin(), (sp,) * 3,
                             image.GetDirection(), 0, img.GetPixelID())
    return res(image, sitk.sitkLinear), [(res(lab, sitk.sitkNearestNeighbor), n) for lab, n in layers]


def _standardize_2d(w: _Writer, loaded: LoadedSample) -> None:
    cfg = w.config.standardize
    img = np.asarray(loaded.image)
    t = intensity.choose(w.row["modality"], img, cfg, None, loaded.photometric) if img.dtype != np.uint8 \
        else intensity.photographic(img, loaded.photometric)
    pixels = t.apply_plane(img)
    h, wd = pixels.shape[:2]
    task = w.row["task_type"]
    pending = []
    if task in ("cls", "mcls"):
        pending.append(("image", sorted(loaded.labels), 0, [0.0, 0.0, float(wd), float(h)], wd * h,
                        [wd / 2, h / 2], None))
    for k, b in enumerate(loaded.boxes):
        pending.append(("box", [b.label], k + 1, [b.x0, b.y0, b.x1, b.y1], int((b.x1 - b.x0) * (b.y1 - b.y0)),
                        [(b.x0 + b.x1) / 2, (b.y0 + b.y1) / 2], None))
    floor = min_area(wd, h, cfg.min_region_pixels, cfg.min_region_fraction)
    faint: set[str] = set()
    filled: set[tuple[str, int]] = set()  # (label, component) described as the region its outline encloses
    for layer in loaded.layers:
        inst, table = label_instances(np.asarray(layer.data), layer.names, cfg.connectivity_2d)
        filled.update(table[i] for i in fill_outlines(inst, cfg))
        kept, dropped = describe_instances(inst, floor)
        w.out.dropped_small += len(dropped)
        faint.update(table[i][0] for i in dropped)
        for iid, shape in kept:
            label, comp = table[iid]
            pending.append(("mask", [label], comp, shape.bbox, shape.area_px, shape.centroid, shape.rle))
    if not pending:
        raise SampleError(Reason.EMPTY_MASK, "no region left after the small-mask filter")
    image_id = w.image(pixels, "2d", 0, t, "", "", plane_spacing_2d(w.row.get("spacing")), faint=sorted(faint))
    for kind, labels, comp, bbox, area, centroid, rle in pending:
        name = f"{w.row['dataset_id']}/{w.case}/{kind}/{'+'.join(labels)}/{comp}"
        w.region(image_id, name, kind, labels, comp, wd, h, bbox, area, centroid, rle,
                 kind == "mask" and (labels[0], comp) in filled)


def standardize_sample(row: dict, source: Source, config: PipelineConfig, staging: Path, rel_root: str) -> SampleOutput:
    """All slices and regions of one sample; a bad sample becomes a quarantine row instead."""
    w = _Writer(row, source, config, staging, rel_root)
    try:
        loaded = with_timeout(lambda: reader_for(source, config).load(row), config.ingest.read_timeout_s,
                              row["source_path"], "decoding")
        (_standardize_3d if loaded.dim == 3 else _standardize_2d)(w, loaded)
    except SampleError as exc:
        shutil.rmtree(staging / w.case, ignore_errors=True)
        q = Quarantined(exc.path or row["source_path"], exc.reason, str(exc))
        return SampleOutput(quarantine=[quarantine_row(row["dataset_id"], "standardize", q, config.seed,
                                                        row["sample_id"])])
    except (OSError, RuntimeError, ValueError) as exc:
        shutil.rmtree(staging / w.case, ignore_errors=True)
        q = Quarantined(row["source_path"], Reason.CORRUPT_FILE, f"could not standardize: {type(exc).__name__}: {exc}")
        return SampleOutput(quarantine=[quarantine_row(row["dataset_id"], "standardize", q, config.seed,
                                                        row["sample_id"])])
    return w.out


class SamplePlanes:
    """One sample re-decoded to give back the exact 8-bit planes its slice rows describe (render time).

    The pixels are checked against the sha256 recorded at describe time: a source file that changed
    since then is an error naming the dataset to re-describe, never a silently different image."""

    def __init__(self, row: dict, source: Source, config: PipelineConfig):
        self.row, self.config = row, config
        self.loaded = with_timeout(lambda: reader_for(source, config).load_pixels(row),  # marks come from the RLE
                                   config.ingest.read_timeout_s, row["source_path"], "decoding")
        # a volume's planes come from its canonical copy (canonical_volume takes the stored one)
        self.canon = canonical_volume(self.loaded, config.standardize, row["source_path"]) \
            if self.loaded.dim == 3 else None

    def rgb(self, sl: dict) -> np.ndarray:
        arr = plane(self.canon.array, sl["axis"], int(sl["index"])) if self.canon is not None \
            else np.asarray(self.loaded.image)
        return self._checked(sl, arr)

    def rgb_each(self, slices: list[dict]) -> Iterator[tuple[dict, np.ndarray]]:
        """(slice row, :meth:`rgb`) of each row. A volume's planes are cut an axis at a time, a bounded stack of
        them per pass over the volume: cut one by one, a coronal or sagittal plane is a strided gather that misses
        the cache at nearly every pixel (the planes come out axis by axis, then by index)."""
        if self.canon is None:
            for sl in slices:
                yield sl, self.rgb(sl)
            return
        vol = self.canon.array
        by_axis: dict[str, list[dict]] = defaultdict(list)
        for sl in slices:
            by_axis[sl["axis"]].append(sl)
        for axis in sorted(by_axis):
            rows = sorted(by_axis[axis], key=lambda r: (int(r["index"]), r["image_id"]))
            h, w = plane(vol, axis, 0).shape
            start = 0
            for idx in chunks(np.unique([int(r["index"]) for r in rows]), h * w):
                cut = np.ascontiguousarray(stack(vol, axis, idx))
                at = {int(i): j for j, i in enumerate(idx)}
                while start < len(rows) and int(rows[start]["index"]) in at:
                    yield rows[start], self._checked(rows[start], cut[at[int(rows[start]["index"])]])
                    start += 1

    def _checked(self, sl: dict, arr: np.ndarray) -> np.ndarray:
        t = intensity.Transform(sl["intensity_transform"], json.loads(sl["intensity_params"]))
        pixels = t.apply_plane(arr)
        if sha256_bytes(pixels.tobytes()) != sl["sha256"]:
            raise SampleError(Reason.CORRUPT_FILE,
                              f"{self.row['source_path']}: plane {sl['axis']}/{sl['index']} differs from the one "
                              f"described; the source changed since: re-materialize slices/regions for dataset "
                              f"'{self.row['dataset_id']}'", self.row["source_path"])
        return intensity.to_rgb(pixels)


@dataclass
class SampleTables:
    """One sample's rows as Arrow tables: built in the worker that described it, so the parent process only
    concatenates (cheap to send back, no per-row work on the one serial process)."""

    slices: pa.Table
    regions: pa.Table
    quarantine: list[dict]
    dropped_small: int


def _worker(args) -> SampleTables:
    out = standardize_sample(*args)
    row, _, config = args[:3]
    return SampleTables(to_table(out.slices, SLICES), out.region_table(provenance(row, config)), out.quarantine,
                        out.dropped_small)


def _sorted(parts: list[pa.Table], schema: pa.Schema, key: str) -> pa.Table:
    table = pa.concat_tables([to_table([], schema), *parts])
    return table.sort_by(key).combine_chunks() if table.num_rows else table


def standardize_dataset(source: Source, config: PipelineConfig, samples: pa.Table, data_root: Path,
                        workers: int = 1) -> StandardizeResult:
    """Describe every sample; slice PNGs, when written, go to a staging folder swapped in whole."""
    rel_root = f"images/{source.id}"
    with staged_dir(DataLayout(data_root).images(source.id)) as staging:
        jobs = [(row, source, config, staging, rel_root) for row in samples.to_pylist()]
        outputs = list(ordered_map(_worker, jobs, workers, release=True))
    bad = [q for o in outputs for q in o.quarantine]
    return StandardizeResult(slices=_sorted([o.slices for o in outputs], SLICES, "image_id"),
                             regions=_sorted([o.regions for o in outputs], REGIONS, "region_id"),
                             quarantine=to_table(bad, QUARANTINE), dropped_small=sum(o.dropped_small for o in outputs))
