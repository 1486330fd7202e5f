"""Build the roi_annotations rows of one dataset: every named region and every whole image.

Geometry words are computed column-wise from the rows; pixel facts (intensity vs ring, boundary, shape,
colour, relations, containers, lesion sizes) re-decode each sample once (``SamplePlanes``, sha256-checked)
so memory stays one volume at a time. No PNG is needed or written here.

Statements about "the plane" (relations, the labelled list, "no other structure is labelled", counts) are
made from every label of the source plane: every image rendered from it, whatever CT window, and the labels
whose cross-section there was too small to keep as a region (``slices.faint_labels``).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import cv2
import numpy as np
import pandas as pd
import pyarrow as pa

from pipelines import PIPELINE_VERSION
from pipelines.annotate import context, measure, words
from pipelines.annotate.names import LabelName, label_names, unknown
from pipelines.annotate.relations import (
    Structure,
    container,
    relation_text,
    relations,
    structure,
)
from pipelines.annotate.text import (
    fact_check,
    image_caption,
    roi_caption,
    whole_image_caption,
)
from pipelines.candidates.generators.measure import feret_mm
from pipelines.config import PipelineConfig
from pipelines.ids import stable_id
from pipelines.processes import ordered_map
from pipelines.records import ROI_ANNOTATIONS, to_table
from pipelines.source import Source
from pipelines.standardize.planes import plane
from pipelines.standardize.regions import decode_rle
from pipelines.standardize.run import SamplePlanes

HU_MODALITIES = {"CT", "CTA"}
FOREGROUND_NAME = {"photo": "the lit field of view"}  # else "the imaged tissue"


def roi_mask(r: dict) -> np.ndarray:
    """Full-plane boolean mask of a region: its RLE, its filled box, or the whole image."""
    h, w = int(r["height"]), int(r["width"])
    if r["kind"] == "mask" and r.get("mask_rle"):
        return decode_rle(r["mask_rle"], h, w)
    m = np.zeros((h, w), bool)
    if r["kind"] == "box":
        x0, y0, x1, y1 = (int(round(v)) for v in r["bbox"])
        m[max(0, y0):min(h, y1), max(0, x0):min(w, x1)] = True
    else:
        m[:] = True
    return m


def _ibox(bbox) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = bbox
    return int(np.floor(x0)), int(np.floor(y0)), int(np.ceil(x1)), int(np.ceil(y1))


def plane_ids(slices: pd.DataFrame) -> pd.Series:
    """One id per source plane (sample, axis, index): the windows of a CT plane share it."""
    return pd.Series([stable_id(s, a, int(i)) for s, a, i in zip(slices["sample_id"], slices["axis"], slices["index"])],
                     index=slices.index, dtype=object)


def geometry_frame(regions: pd.DataFrame, slices: pd.DataFrame, vocab: pd.DataFrame) -> pd.DataFrame:
    """Region rows joined with their plane and vocabulary entry, plus the column-wise position facts."""
    sl = slices[["image_id", "modality", "axis", "index", "orientation", "original_orientation", "spacing"]]
    df = regions.merge(sl, on="image_id", how="left")
    voc = vocab[vocab["dataset_id"].isin(df["dataset_id"].unique())][
        ["dataset_id", "raw_label", "canonical_label", "mesh_id", "task"]]
    df = df.merge(voc, on=["dataset_id", "raw_label"], how="left")
    df["label"] = df["canonical_label"].fillna(df["raw_label"])
    b = np.array(df["bbox"].tolist(), float).reshape(-1, 4)
    c = np.array(df["centroid"].tolist(), float).reshape(-1, 2)
    w, h = df["width"].to_numpy(float), df["height"].to_numpy(float)
    df["bbox_norm"] = list(np.round(b / np.stack([w, h, w, h], 1), 6))
    df["centroid_norm"] = list(np.round(c / np.stack([w, h], 1), 6))
    hb, vb = words.position_bins(c[:, 0] / w, c[:, 1] / h)
    df["position_h"] = [words.H_WORDS[i] for i in hb]
    df["position_v"] = [words.V_WORDS[i] for i in vb]
    df["position_text"] = [words.image_position(i, j) for i, j in zip(hb, vb)]
    df["patient_side"] = [words.patient_position(x, y, o, a) for x, y, o, a in
                          zip(c[:, 0] / w, c[:, 1] / h, df["orientation"], df["axis"])]
    df["area_ratio"] = df["area_px"].to_numpy(float) / (w * h)
    df["area_word"] = [words.area_word(r) for r in df["area_ratio"]]
    df["area_text"] = [words.area_text(r) for r in df["area_ratio"]]
    return df


@dataclass
class PlaneFacts:
    """What one source plane holds: every raw label (regions of every window, and faint specks) and the number of
    separate regions of each exhaustive label without a speck there."""

    labels: set[str] = field(default_factory=set)
    counts: dict[str, int] = field(default_factory=dict)
    instances: dict[str, int] = field(default_factory=dict)  # regions of each label, a faint speck counting as one


def _pixels(planes: SamplePlanes, sl: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, str, bool]:
    """(values compared for intensity, 8-bit grey display plane, RGB display plane, unit, colour?) of one image."""
    rgb = planes.rgb(sl)
    grey = rgb.mean(axis=2) if rgb.ndim == 3 else rgb.astype(float)
    colour = measure.is_colour(rgb)
    if planes.canon is not None:
        raw = plane(planes.canon.array, sl["axis"], int(sl["index"])).astype(np.float64)
        return raw, grey, rgb, "HU" if sl["modality"] in HU_MODALITIES else "raw", colour
    return grey.astype(np.float64), grey, rgb, "grey8", colour


def _pieces(mask: np.ndarray) -> int:
    return cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)[0] - 1


def _labels_of(r: dict) -> list[str]:
    labs = r.get("labels")
    return list(labs) if labs is not None and len(labs) else [r["raw_label"]]


@dataclass(frozen=True)
class Job:
    """What annotating one sample needs (pickles to a worker process)."""

    sample: dict
    source: Source
    slices: list[dict]
    rows: list[dict]
    config: PipelineConfig
    names: dict[str, LabelName]
    exhaustive: frozenset[str]


def annotate_sample(job: Job) -> tuple[dict[str, dict], dict[str, PlaneFacts]]:
    """Pixel facts and relations of every named region of one sample (by region_id), and the facts of each
    of its planes (by plane_id)."""
    names = job.names
    planes = SamplePlanes(job.sample, job.source, job.config)
    by_image = defaultdict(list)
    for r in job.rows:
        by_image[r["image_id"]].append(r)
    by_plane = defaultdict(list)
    for sl in job.slices:
        by_plane[sl["plane_id"]].append(sl)
    out: dict[str, dict] = {}
    facts_of: dict[str, PlaneFacts] = {}
    for pid, imgs in by_plane.items():
        regs = [r for sl in imgs for r in by_image.get(sl["image_id"], [])]
        facts = facts_of[pid] = PlaneFacts()
        faint = {lab for sl in imgs for lab in (sl.get("faint_labels") if sl.get("faint_labels") is not None else [])}
        facts.labels = {lab for r in regs for lab in _labels_of(r)} | faint
        for r in regs:
            facts.instances[r["raw_label"]] = facts.instances.get(r["raw_label"], 0) + 1
        for lab in faint:
            facts.instances[lab] = facts.instances.get(lab, 0) + 1
        if not regs:
            continue
        masks = {r["region_id"]: roi_mask(r) for r in regs if r["kind"] != "image"}
        unions: dict[str, np.ndarray] = {}
        for r in regs:
            if r["kind"] != "image":
                m = masks[r["region_id"]]
                unions[r["raw_label"]] = unions[r["raw_label"]] | m if r["raw_label"] in unions else m.copy()
        structures: list[Structure] = [structure(lab, names.get(lab, unknown(lab)).name, m)
                                       for lab, m in sorted(unions.items())]
        for s in structures:
            if s.raw_label in job.exhaustive and s.raw_label not in faint:
                facts.counts[s.raw_label] = _pieces(s.mask)
        for sl in imgs:
            named = [r for r in by_image.get(sl["image_id"], []) if _is_named(r, names)]
            if not named:
                continue
            pixels = _pixels(planes, sl)
            fam = words.intensity_family(sl["modality"])
            for r in named:
                out[r["region_id"]] = _region_facts(r, masks.get(r["region_id"]), pixels, fam, sl, structures,
                                                   facts, job.config)
    return out, facts_of


def _is_named(r: dict, names: dict[str, LabelName]) -> bool:
    return all(names.get(lab, unknown(lab)).name for lab in _labels_of(r))


def _region_facts(r: dict, m: np.ndarray | None, pixels, fam: str, sl: dict, structures: list[Structure],
                  facts: PlaneFacts, config: PipelineConfig) -> dict:
    values, grey, rgb, unit, colour = pixels
    out = {"intensity_unit": unit, "relations": [], "other_labels": len(facts.labels - set(_labels_of(r))),
           "other_instances": facts.instances.get(r["raw_label"], 1) - 1}
    if r["kind"] == "image":
        return out
    a = config.annotate
    box = _ibox(r["bbox"])
    ring = measure.ring_width(r["area_px"], a.ring_fraction, a.ring_min_px, a.ring_max_px)
    out |= measure.measure_roi(values, grey, m, box, ring, a.contrast_floor, r["kind"] == "mask")
    out["mean_rgb"] = measure.mean_colour(rgb, m, box) if colour else None
    out["relations"] = relations(m, box, tuple(r["centroid"]), r["raw_label"], structures, ring,
                                 sl["orientation"], sl["axis"], a.nearest_structures)
    if r.get("semantic_type") == "lesion":
        out |= _lesion(r, m, values, grey, fam, unit, sl, structures, facts)
    return out


def _lesion(r: dict, m: np.ndarray, values: np.ndarray, grey: np.ndarray, fam: str, unit: str, sl: dict,
            structures: list[Structure], facts: PlaneFacts) -> dict:
    """Size (mm only with a known spacing), multiplicity (exhaustive labels only) and the containing structure
    (a labelled one whose outline holds it, else the imaged tissue) with the part of it the lesion lies in."""
    out: dict = {"is_lesion": True}
    known = sl["axis"] in context.VIEWS
    if known and r["kind"] == "mask":
        sx, sy = (float(v) for v in sl["spacing"])
        out["diameter_mm"] = round(feret_mm(m, sx, sy), 1)
        out["area_mm2"] = round(float(m.sum()) * sx * sy, 1)
    n = facts.counts.get(r["raw_label"])
    if n is not None:
        unit_word = "plane" if known else "image"
        out["multiplicity"] = (f"solitary lesion region on this {unit_word}" if n == 1 else
                               f"one of {n} separate lesion regions on this {unit_word}")
    holder = container(m, r["raw_label"], structures)
    if holder is not None:
        cmask, cname, source = holder.filled, f"the {holder.name}", "label"
    else:
        cmask, cname, source = measure.foreground(values, grey, fam, unit), FOREGROUND_NAME.get(fam, "the imaged tissue"), "foreground"
        if cmask is not None and (m & cmask).sum() < 0.9 * m.sum():
            cmask = None
    if cmask is not None:
        ys, xs = np.nonzero(cmask)
        x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
        cx, cy = r["centroid"]
        out.update(container=cname, container_source=source, container_ratio=round(float(m.sum() / cmask.sum()), 4),
                   container_position=words.part_of((cx + 0.5 - x0) / (x1 - x0), (cy + 0.5 - y0) / (y1 - y0),
                                                    sl["orientation"], sl["axis"]))
    return out


def _worker(job: Job):
    return annotate_sample(job)


def annotate_dataset(source: Source, config: PipelineConfig, samples: pd.DataFrame, slices: pd.DataFrame,
                     regions: pd.DataFrame, vocab: pd.DataFrame) -> pa.Table:
    """One annotation row per named region and per image of a dataset (a ROI_ANNOTATIONS table)."""
    a = config.annotate
    names = label_names(vocab, source.id)
    exhaustive = frozenset(source.label_map.exhaustive_labels())
    slices = slices.assign(plane_id=plane_ids(slices))
    geo = geometry_frame(regions, slices, vocab)
    geo["semantic_type"] = [names.get(lab, unknown(lab)).semantic_type for lab in geo["raw_label"]]
    rows = geo.to_dict("records")
    by_sample = defaultdict(list)
    for r in rows:
        by_sample[r["sample_id"]].append(r)
    sample_rows = {r["sample_id"]: r for r in samples.to_dict("records")}
    slice_groups = {k: g.to_dict("records") for k, g in slices.groupby("sample_id")}
    jobs = [Job(sample_rows[s], source, slice_groups.get(s, []), rs, config, names, exhaustive)
            for s, rs in sorted(by_sample.items())]
    pix, plane_facts = {}, {}
    for p, f in ordered_map(_worker, jobs, a.workers):
        pix.update(p)
        plane_facts.update(f)
    sl_by_id = {sl["image_id"]: sl for sl in slices.to_dict("records")}
    fp = config.fingerprint()
    ctx = {i: _context(sl, plane_facts.get(sl["plane_id"], PlaneFacts()), names, source) | {"config_fingerprint": fp}
           for i, sl in sl_by_id.items()}
    out = [_roi_row(r, pix[r["region_id"]], sl_by_id[r["image_id"]], ctx[r["image_id"]], names, exhaustive,
                    plane_facts.get(sl_by_id[r["image_id"]]["plane_id"], PlaneFacts()), config)
           for r in rows if r["region_id"] in pix]
    out += [_image_row(sl, ctx[i], config) for i, sl in sl_by_id.items()]
    return to_table(sorted(out, key=lambda r: r["annotation_id"]), ROI_ANNOTATIONS)


def _context(sl: dict, facts: PlaneFacts, names: dict[str, LabelName], source: Source) -> dict:
    """The plane's labels as an image caption lists them, and the metadata layer."""
    infos = [names.get(lab, unknown(lab)) for lab in sorted(facts.labels)]
    named = sorted({i.name for i in infos if i.name})
    diagnosis = sorted({i.name for i in infos if i.name and i.semantic_type == "lesion"})
    regions = sorted({i.task.split(" - ", 1)[1].lower() for i in infos
                      if i.name and i.task and i.task.startswith("Organ Recognition - ")})
    body = context.region(regions) if regions else source.label_map.context
    return {"structures": named, "unnamed_structures": sum(1 for i in infos if not i.name), "diagnosis": diagnosis,
            "body_region": body, "sequence": context.sequence(sl["modality"]), "view": context.view(sl["axis"]),
            "context_text": context.context_text(sl["modality"], sl["axis"], body, diagnosis)}


def _clean(v):
    return None if v is None or (isinstance(v, float) and not np.isfinite(v)) else v


def _common(sl: dict, ctx: dict, config: PipelineConfig) -> dict:
    known = sl["axis"] in context.VIEWS
    return {"image_id": sl["image_id"], "plane_id": sl["plane_id"], "sample_id": sl["sample_id"],
            "group_id": sl["group_id"], "sha256": sl["sha256"], "dataset_id": sl["dataset_id"],
            "source_path": sl["source_path"], "modality": sl["modality"], "axis": sl["axis"],
            "slice_index": int(sl["index"]) if sl.get("index") is not None else None,
            "orientation": sl.get("orientation") or None, "original_orientation": sl.get("original_orientation") or None,
            "spacing": [float(v) for v in sl["spacing"]] if known and sl.get("spacing") is not None else None,
            "spacing_known": known, "image_width": int(sl["width"]), "image_height": int(sl["height"]),
            "body_region": ctx["body_region"], "sequence": ctx["sequence"], "view": ctx["view"],
            "diagnosis": ctx["diagnosis"], "context_text": ctx["context_text"],
            "pipeline_version": PIPELINE_VERSION, "seed": config.seed, "config_fingerprint": ctx["config_fingerprint"],
            "llm_paragraph": None, "llm_model": None, "llm_prompt_hash": None, "llm_fact_check": "not_generated",
            "llm_fact_issues": []}


LESION_NULLS = dict.fromkeys(("diameter_mm", "area_mm2", "margin_word", "multiplicity", "container",
                              "container_source", "container_ratio", "container_position"))


def _roi_row(r: dict, p: dict, sl: dict, ctx: dict, names: dict[str, LabelName], exhaustive: frozenset[str],
             facts: PlaneFacts, config: PipelineConfig) -> dict:
    a = config.annotate
    whole = r["kind"] == "image"
    info = names.get(r["raw_label"], unknown(r["raw_label"]))
    name = "; ".join(names[lab].name for lab in _labels_of(r)) if whole else info.name
    outlined = r["kind"] == "mask"  # a box's edges are not the structure's: no boundary, shape or margin facts
    if not outlined:
        p = {**p, "boundary_sharpness": None, "elongation": None, "solidity": None}
    iw = None if whole else words.intensity_word(p.get("contrast_d"), r["modality"], a.iso_band)
    rel = p.get("relations", [])
    row = {**_common(sl, ctx, config),
           "annotation_id": r["region_id"], "scope": "roi", "region_id": r["region_id"],
           "kind": r["kind"], "raw_label": r["raw_label"], "label": r["label"], "name": name,
           "laterality": info.laterality, "semantic_type": info.semantic_type,
           "mesh_id": r["mesh_id"] if isinstance(r.get("mesh_id"), str) else None,
           "structures": [], "unnamed_structures": None, "other_labels": p.get("other_labels"),
           "other_instances": None if whole else p.get("other_instances"),
           "bbox": [float(v) for v in r["bbox"]], "bbox_norm": [float(v) for v in r["bbox_norm"]],
           "mask_rle": r["mask_rle"] if r["kind"] == "mask" else None,
           "area_px": int(r["area_px"]), "area_ratio": float(r["area_ratio"]), "area_word": r["area_word"],
           "area_text": r["area_text"], "centroid": [float(v) for v in r["centroid"]],
           "centroid_norm": [float(v) for v in r["centroid_norm"]],
           "exhaustive": r["raw_label"] in exhaustive,
           "count_on_plane": None if whole else facts.counts.get(r["raw_label"]),
           "position_h": None if whole else r["position_h"], "position_v": None if whole else r["position_v"],
           "position_text": "whole image" if whole else r["position_text"],
           "patient_side": None if whole else r["patient_side"],
           "intensity_unit": p.get("intensity_unit"),
           **{k: _clean(p.get(k)) for k in ("mean_in", "std_in", "mean_ring", "std_ring", "contrast_d",
                                            "boundary_sharpness", "elongation", "solidity")},
           "ring_px": p.get("ring_px"), "intensity_word": iw,
           "mean_rgb": list(p["mean_rgb"]) if p.get("mean_rgb") else None,
           "colour_word": words.colour_word(p.get("mean_rgb")),
           "boundary_word": None if not outlined else words.boundary_word(p.get("boundary_sharpness"), a.sharp_edge,
                                                                          a.blurred_edge),
           "shape_word": None if not outlined else words.shape_word(p.get("elongation"), p.get("solidity")),
           "is_lesion": bool(p.get("is_lesion")), **LESION_NULLS,
           **{k: p[k] for k in LESION_NULLS if k in p},
           "relations": [{k: e[k] for k in ("structure", "raw_label", "relation", "side", "distance")} for e in rel],
           "relation_text": None if whole else (relation_text(rel) or None)}
    if row["is_lesion"] and outlined:
        row["margin_word"] = words.margin_word(row["solidity"])
    if whole:
        row["caption"] = whole_image_caption(row)
        row["fact_issues"] = [] if name.lower() in row["caption"].lower() else ["name missing"]
    else:
        row["caption"] = roi_caption(row)
        row["fact_issues"] = fact_check(row["caption"], {**row, "relation_labels": [e["structure"] for e in rel]})
    return row


def _image_row(sl: dict, ctx: dict, config: PipelineConfig) -> dict:
    row = {**_common(sl, ctx, config), "annotation_id": f"{sl['image_id']}_image", "scope": "image",
           "region_id": None, "kind": "image", "raw_label": None, "label": None, "name": None, "laterality": None,
           "semantic_type": None, "mesh_id": None, "structures": ctx["structures"],
           "unnamed_structures": ctx["unnamed_structures"], "other_labels": None, "other_instances": None,
           "bbox": [0.0, 0.0, float(sl["width"]), float(sl["height"])], "bbox_norm": [0.0, 0.0, 1.0, 1.0],
           "mask_rle": None, "area_px": int(sl["width"]) * int(sl["height"]), "area_ratio": 1.0,
           "area_word": "very large", "area_text": "100.0%", "centroid": [sl["width"] / 2, sl["height"] / 2],
           "centroid_norm": [0.5, 0.5], "exhaustive": None, "count_on_plane": None, "position_h": None,
           "position_v": None, "position_text": "whole image", "patient_side": None, "intensity_unit": None,
           **dict.fromkeys(("mean_in", "std_in", "mean_ring", "std_ring", "contrast_d", "boundary_sharpness",
                            "elongation", "solidity", "ring_px", "intensity_word", "mean_rgb", "colour_word",
                            "boundary_word", "shape_word")),
           "is_lesion": False, **LESION_NULLS, "relations": [], "relation_text": None, "fact_issues": []}
    row["caption"] = image_caption({**row, "viewer_left": words.viewer_left_is(sl.get("orientation"), sl["axis"]),
                                    "width": sl["width"], "height": sl["height"]})
    return row
