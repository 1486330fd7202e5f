"""Build the roi_annotations rows of one dataset: every region and every whole image.

Geometry words are computed column-wise from the rows; pixel facts (intensity vs ring, boundary,
shape, relations) re-decode each sample once (``SamplePlanes``, sha256-checked) so memory stays one
volume at a time. No PNG is needed or written here.
"""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
import pandas as pd
import pyarrow as pa

from pipelines import PIPELINE_VERSION
from pipelines.annotate import measure, words
from pipelines.annotate.relations import relation_text, relations
from pipelines.annotate.text import fact_check, image_caption, roi_caption
from pipelines.config import PipelineConfig
from pipelines.processes import ordered_map
from pipelines.records import ROI_ANNOTATIONS, to_table
from pipelines.registry import Source
from pipelines.standardize.planes import plane
from pipelines.standardize.regions import decode_rle
from pipelines.standardize.run import SamplePlanes

HU_MODALITIES = {"CT", "CTA"}


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
    df["instances"] = df.groupby(["image_id", "label"])["region_id"].transform("count")
    return df


def _pixels(planes: SamplePlanes, sl: dict) -> tuple[np.ndarray, np.ndarray, str]:
    """(values compared for intensity, 8-bit grey display plane, unit) of one plane."""
    rgb = planes.rgb(sl)
    grey = rgb.mean(axis=2) if rgb.ndim == 3 else rgb.astype(float)
    if planes.canon is not None:
        raw = plane(planes.canon.array, sl["axis"], int(sl["index"])).astype(np.float64)
        return raw, grey, "HU" if sl["modality"] in HU_MODALITIES else "raw"
    return grey.astype(np.float64), grey, "grey8"


def annotate_sample(sample: dict, source: Source, slices: list[dict], rows: list[dict],
                    config: PipelineConfig) -> dict[str, dict]:
    """Pixel facts and relations of every region of one sample, keyed by region_id."""
    a = config.annotate
    planes = SamplePlanes(sample, source, config)
    by_image = defaultdict(list)
    for r in rows:
        by_image[r["image_id"]].append(r)
    out: dict[str, dict] = {}
    for sl in slices:
        regs = by_image.get(sl["image_id"], [])
        if not regs:
            continue
        values, grey, unit = _pixels(planes, sl)
        masks = {r["region_id"]: roi_mask(r) for r in regs}
        structures: dict[str, tuple[np.ndarray, tuple[float, float], int]] = {}
        for lab, group in pd.DataFrame(regs).groupby("label"):
            if (group["kind"] == "image").all():
                continue
            union = np.logical_or.reduce([masks[i] for i in group["region_id"]])
            ys, xs = np.nonzero(union)
            structures[lab] = (union, (float(xs.mean()), float(ys.mean())), int(union.sum()))
        for r in regs:
            if r["kind"] == "image":
                out[r["region_id"]] = {"intensity_unit": unit, "relations": []}
                continue
            m = masks[r["region_id"]]
            ring = measure.ring_width(r["area_px"], a.ring_fraction, a.ring_min_px, a.ring_max_px)
            facts = measure.measure_roi(values, grey, m, _ibox(r["bbox"]), ring, a.contrast_floor)
            facts["intensity_unit"] = unit
            facts["relations"] = relations(m, _ibox(r["bbox"]), tuple(r["centroid"]), r["label"], structures, ring,
                                           sl["orientation"], sl["axis"], a.nearest_structures)
            out[r["region_id"]] = facts
    return out


def _worker(args) -> dict[str, dict]:
    return annotate_sample(*args)


def annotate_dataset(source: Source, config: PipelineConfig, samples: pd.DataFrame, slices: pd.DataFrame,
                     regions: pd.DataFrame, vocab: pd.DataFrame) -> pa.Table:
    """One annotation row per region and per image of a dataset (a ROI_ANNOTATIONS table)."""
    a = config.annotate
    geo = geometry_frame(regions, slices, vocab)
    rows = geo.to_dict("records")
    by_sample = defaultdict(list)
    for r in rows:
        by_sample[r["sample_id"]].append(r)
    sample_rows = {r["sample_id"]: r for r in samples.to_dict("records")}
    slice_groups = {k: g.to_dict("records") for k, g in slices.groupby("sample_id")}
    jobs = [(sample_rows[s], source, slice_groups.get(s, []), rs, config) for s, rs in sorted(by_sample.items())]
    parts = list(ordered_map(_worker, jobs, a.workers))
    pix = {k: v for p in parts for k, v in p.items()}
    out = [_roi_row(r, pix.get(r["region_id"], {}), config) for r in rows]
    labels = geo.groupby("image_id")["label"].agg(lambda s: sorted(set(s)))
    out += [_image_row(sl, labels.get(sl["image_id"], []), config) for sl in slices.to_dict("records")]
    return to_table(sorted(out, key=lambda r: r["annotation_id"]), ROI_ANNOTATIONS)


def _clean(v):
    return None if v is None or (isinstance(v, float) and not np.isfinite(v)) else v


def _common(r: dict, config: PipelineConfig) -> dict:
    return {"image_id": r["image_id"], "sample_id": r["sample_id"], "group_id": r["group_id"],
            "dataset_id": r["dataset_id"], "source_path": r["source_path"], "modality": r["modality"],
            "axis": r["axis"], "slice_index": int(r["index"]) if r.get("index") is not None else None,
            "orientation": r.get("orientation") or None, "original_orientation": r.get("original_orientation") or None,
            "spacing": [float(v) for v in r["spacing"]] if r.get("spacing") is not None else None,
            "image_width": int(r["width"]), "image_height": int(r["height"]),
            "file_name": f"images/{r['dataset_id']}/{r['image_id']}.png",
            "pipeline_version": PIPELINE_VERSION, "seed": config.seed, "config_fingerprint": config.fingerprint(),
            "llm_paragraph": None, "llm_model": None, "llm_prompt_hash": None, "llm_fact_check": "not_generated",
            "llm_fact_issues": []}


def _roi_row(r: dict, p: dict, config: PipelineConfig) -> dict:
    a = config.annotate
    whole = r["kind"] == "image"
    outlined = r["kind"] == "mask"  # a box's edges are not the structure's: no boundary or shape facts
    if not outlined:
        p = {**p, "boundary_sharpness": None, "elongation": None, "solidity": None}
    iw = None if whole else words.intensity_word(p.get("contrast_d"), r["modality"], a.iso_band)
    row = {**_common(r, config), "annotation_id": r["region_id"], "scope": "roi", "region_id": r["region_id"],
           "kind": r["kind"], "raw_label": r["raw_label"], "label": r["label"],
           "mesh_id": r["mesh_id"] if isinstance(r.get("mesh_id"), str) else None,
           "body_region": _body(r.get("task")), "structures": [],
           "bbox": [float(v) for v in r["bbox"]], "bbox_norm": [float(v) for v in r["bbox_norm"]],
           "mask_rle": r["mask_rle"] if r["kind"] == "mask" else None,
           "area_px": int(r["area_px"]), "area_ratio": float(r["area_ratio"]), "area_word": r["area_word"],
           "area_text": r["area_text"], "centroid": [float(v) for v in r["centroid"]],
           "centroid_norm": [float(v) for v in r["centroid_norm"]], "instances": int(r["instances"]),
           "position_h": None if whole else r["position_h"], "position_v": None if whole else r["position_v"],
           "position_text": "whole image" if whole else r["position_text"],
           "patient_side": None if whole else r["patient_side"],
           "intensity_unit": p.get("intensity_unit"),
           **{k: _clean(p.get(k)) for k in ("mean_in", "std_in", "mean_ring", "std_ring", "contrast_d",
                                            "boundary_sharpness", "elongation", "solidity")},
           "ring_px": p.get("ring_px"), "intensity_word": iw,
           "boundary_word": None if not outlined else words.boundary_word(p.get("boundary_sharpness"), a.sharp_edge,
                                                                          a.blurred_edge),
           "shape_word": None if not outlined else words.shape_word(p.get("elongation"), p.get("solidity")),
           "relations": json.dumps(p.get("relations", []), ensure_ascii=False)}
    rel = p.get("relations", [])
    row["relation_text"] = None if whole else relation_text(rel)
    if whole:
        row["caption"] = (f"{r['modality']} image from {r['dataset_id']} labelled as a whole: {r['label']}.")
        row["fact_issues"] = [] if r["label"].lower() in row["caption"].lower() else ["label missing"]
    else:
        row["caption"] = roi_caption(row)
        row["fact_issues"] = fact_check(row["caption"], {**row, "relation_labels": [e["structure"] for e in rel]})
    return row


def _image_row(sl: dict, labels: list[str], config: PipelineConfig) -> dict:
    row = {**_common(sl, config), "annotation_id": f"{sl['image_id']}_image", "scope": "image", "region_id": None,
           "kind": "image", "raw_label": None, "label": None, "mesh_id": None, "body_region": None,
           "structures": list(labels), "bbox": [0.0, 0.0, float(sl["width"]), float(sl["height"])],
           "bbox_norm": [0.0, 0.0, 1.0, 1.0], "mask_rle": None, "area_px": int(sl["width"]) * int(sl["height"]),
           "area_ratio": 1.0, "area_word": "very large", "area_text": "100.0%", "centroid": [sl["width"] / 2, sl["height"] / 2],
           "centroid_norm": [0.5, 0.5], "instances": 1, "position_h": None, "position_v": None,
           "position_text": "whole image", "patient_side": None, "intensity_unit": None,
           **dict.fromkeys(("mean_in", "std_in", "mean_ring", "std_ring", "contrast_d", "boundary_sharpness",
                            "elongation", "solidity", "ring_px", "intensity_word", "boundary_word", "shape_word")),
           "relations": "[]", "relation_text": None, "fact_issues": []}
    row["caption"] = image_caption({**row, "viewer_left": words.viewer_left_is(sl.get("orientation"), sl["axis"]),
                                    "width": sl["width"], "height": sl["height"]})
    return row


def _body(task: object) -> str | None:
    """Body region from the vocabulary's task ("Organ Recognition - Abdomen" -> "abdomen")."""
    if isinstance(task, str) and task.startswith("Organ Recognition - "):
        return task.split(" - ", 1)[1].lower()
    return None
