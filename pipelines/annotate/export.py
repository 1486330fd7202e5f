"""Exports of the ROI annotations beside the benchmark: a public config of images no test item uses, and the
annotations of the exam's images kept private beside the answer key.

- ``roi_annotations/data/train-NNNNN-of-NNNNN.parquet``: one row per image (its pixels embedded as a datasets
  Image, the unprompted plane: boxes and masks apply pixel for pixel), the global caption, MedTrinity's
  ``caption``/``source`` pair and ``rois``, a list of structs (one per annotated region, each with its
  ``relations`` as a list of structs). `datasets.load_dataset(folder, "roi_annotations")` reads it.
  Identical images (same pixels from two registrations or files) appear once, under one id.
- ``private/roi_annotations.parquet``: the rows of images a test item is linked to (never published).
"""

from __future__ import annotations

import io
from pathlib import Path

import datasets
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.annotate import context
from pipelines.annotate.leak import exam_images, exam_links
from pipelines.annotate.text import (
    PARAGRAPH_SCHEMA,
    fact_check,
    image_caption,
    prompt_messages,
)
from pipelines.annotate.words import viewer_left_is
from pipelines.config import PipelineConfig
from pipelines.imageio import encode_png
from pipelines.records import ROI_ANNOTATIONS
from pipelines.source import Registry
from pipelines.standardize.run import SamplePlanes
from pipelines.storage import atomic_write_bytes

FOLDER = "roi_annotations"
SPLIT = "train"  # a training resource: the exam's images are never in it
PRIVATE = "private/roi_annotations.parquet"

_S, _F, _I, _B = datasets.Value("string"), datasets.Value("float64"), datasets.Value("int64"), datasets.Value("bool")
RELATION = {"structure": _S, "relation": _S, "side": _S, "distance": _F}
ROI_FIELDS = {
    "annotation_id": _S, "kind": _S, "name": _S, "label": _S, "laterality": _S, "semantic_type": _S, "mesh_id": _S,
    "bbox": datasets.List(_F), "bbox_norm": datasets.List(_F), "mask_rle": _S, "area_px": _I, "area_ratio": _F,
    "area_word": _S, "area_text": _S, "centroid_norm": datasets.List(_F), "position_text": _S, "patient_side": _S,
    "exhaustive": _B, "count_on_plane": _I, "intensity_unit": _S, "mean_in": _F, "mean_ring": _F, "contrast_d": _F,
    "intensity_word": _S, "colour_word": _S, "boundary_word": _S, "shape_word": _S, "is_lesion": _B,
    "diameter_mm": _F, "area_mm2": _F, "margin_word": _S, "multiplicity": _S, "container": _S,
    "container_ratio": _F, "container_position": _S, "relations": [RELATION], "caption": _S,
    "llm_paragraph": _S, "llm_fact_check": _S}
FEATURES = datasets.Features({
    "image": datasets.Image(), "image_id": _S, "source": _S, "also_in": datasets.List(_S), "modality": _S,
    "view": _S, "sequence": _S, "body_region": _S, "diagnosis": datasets.List(_S), "axis": _S, "slice_index": _I,
    "orientation": _S, "spacing": datasets.List(_F), "width": _I, "height": _I, "structures": datasets.List(_S),
    "unnamed_structures": _I, "context_text": _S, "global_caption": _S, "caption": _S, "rois": [ROI_FIELDS],
    "pipeline_version": _S, "config_fingerprint": _S})


def chosen_rows(ann: pd.DataFrame, bench: pd.DataFrame, every: bool = False) -> pd.DataFrame:
    """Annotations of the images the benchmark shows (of every annotated image with ``every``)."""
    return ann if every else ann[ann["image_id"].isin(set(bench["image_id"]))]


def dedupe(rows: pd.DataFrame) -> pd.DataFrame:
    """One image id per pixel content (``sha256``): the first image by (dataset, image id) keeps its id; the
    ROI rows of its identical copies move to it (a region two registrations both hold, same label and mask,
    once), their datasets are listed in ``also_in`` and their labels and findings join the image's
    ``structures`` and ``diagnosis`` (a scan registered for segmentation and for classification: the class is
    the image's diagnosis label)."""
    rows = rows.sort_values(["dataset_id", "image_id", "annotation_id"], kind="stable")
    images = rows[rows["scope"] == "image"]
    canonical = images.drop_duplicates("sha256").set_index("sha256")["image_id"]
    out = rows.assign(image_id=rows["sha256"].map(canonical))
    roi = out["scope"] == "roi"
    key = (out["image_id"] + "|" + out["kind"].fillna("") + "|" + out["raw_label"].fillna("") + "|"
           + out["mask_rle"].fillna("") + "|" + out["bbox"].map(lambda b: ",".join(f"{v:g}" for v in b)))
    out = out[~(roi & key.duplicated())]
    img = out[out["scope"] == "image"]
    merged = img.groupby("image_id").agg(
        also_in=("dataset_id", lambda d: sorted(set(d.iloc[1:]) - {d.iloc[0]})),
        structures=("structures", lambda v: sorted({x for s in v if s is not None for x in s})),
        diagnosis=("diagnosis", lambda v: sorted({x for s in v if s is not None for x in s})),
        unnamed=("unnamed_structures", "max"))
    out = out[(out["scope"] == "roi") | out["annotation_id"].isin(img.drop_duplicates("image_id")["annotation_id"])]
    out = out.assign(also_in=out["image_id"].map(merged["also_in"])).reset_index(drop=True)
    for i in out.index[out["scope"] == "image"]:
        m = merged.loc[out.at[i, "image_id"]]
        r = {k: _plain(v) for k, v in out.loc[i].to_dict().items()}
        if m["structures"] == list(r["structures"] or []) and m["diagnosis"] == list(r["diagnosis"] or []):
            continue
        text = context.context_text(r["modality"], r["axis"], r["body_region"], m["diagnosis"])
        out.at[i, "structures"], out.at[i, "diagnosis"], out.at[i, "context_text"] = m["structures"], m["diagnosis"], text
        out.at[i, "caption"] = image_caption({**r, "structures": m["structures"], "unnamed_structures": m["unnamed"],
                                              "context_text": text, "width": r["image_width"],
                                              "height": r["image_height"],
                                              "viewer_left": viewer_left_is(r["orientation"], r["axis"])})
    return out


def partition(rows: pd.DataFrame, bench: pd.DataFrame, planes: pd.DataFrame, bits: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(public rows, private rows, links): rows of images no test item is linked to, the others, and why."""
    images = rows.drop_duplicates("image_id")[["image_id", "group_id", "sha256"]].merge(
        planes[["image_id", "phash"]].drop_duplicates("image_id"), on="image_id", how="left")
    links = exam_links(images, exam_images(bench, planes), bits)
    private = rows["image_id"].isin(set(links["image_id"]))
    return rows[~private].reset_index(drop=True), rows[private].reset_index(drop=True), links


def add_paragraphs(rows: pd.DataFrame, client, config: PipelineConfig) -> tuple[pd.DataFrame, list]:
    """LLM paragraphs for up to ``annotate.llm_max_rows`` ROI rows, each fact-checked against its fields."""
    rows = rows.copy()
    todo = rows.index[(rows["scope"] == "roi") & (rows["kind"] != "image")][:config.annotate.llm_max_rows]
    facts = [_facts(rows.loc[i]) for i in todo]
    results = client.map_json([(prompt_messages(f), "roi_paragraph", PARAGRAPH_SCHEMA) for f in facts])
    records = []
    for i, f, (data, rec) in zip(todo, facts, results):
        records.append(rec)
        rows.at[i, "llm_model"], rows.at[i, "llm_prompt_hash"] = rec.model, rec.prompt_hash
        if data is None or not isinstance(data.get("paragraph"), str):
            rows.at[i, "llm_fact_check"], rows.at[i, "llm_fact_issues"] = "error", [rec.error or "no paragraph"]
            continue
        issues = fact_check(data["paragraph"], f)
        rows.at[i, "llm_paragraph"] = data["paragraph"]
        rows.at[i, "llm_fact_check"] = "fail" if issues else "pass"
        rows.at[i, "llm_fact_issues"] = issues
    return rows, records


def _facts(row: pd.Series) -> dict:
    f = {k: _plain(v) for k, v in row.to_dict().items()}
    f["relation_labels"] = [e["structure"] for e in f.get("relations") or []]
    return f


def best_caption(row: dict) -> str:
    """The LLM paragraph when it passed its fact check, else the template caption."""
    return row["llm_paragraph"] if row.get("llm_fact_check") == "pass" else row["caption"]


def render_images(rows: pd.DataFrame, sources: Registry, samples: dict[str, pd.DataFrame],
                  slices: dict[str, pd.DataFrame], config: PipelineConfig) -> dict[str, bytes]:
    """{image_id: PNG} of the unprompted plane of every image the rows name, one source sample at a time."""
    wanted = rows.drop_duplicates("image_id")[["dataset_id", "sample_id", "image_id"]]
    out = {}
    for (ds, sample_id), part in wanted.groupby(["dataset_id", "sample_id"], sort=True):
        sample = samples[ds].set_index("sample_id").loc[sample_id].to_dict() | {"sample_id": sample_id}
        planes = SamplePlanes(sample, sources.get(ds), config)
        sl = slices[ds].set_index("image_id")
        for image_id in part["image_id"]:
            out[image_id] = encode_png(planes.rgb(sl.loc[image_id].to_dict() | {"image_id": image_id}))
    return out


def _plain(v):
    """Arrow/pandas values as plain Python for the nested rows (arrays to lists, NaN to None)."""
    if v is None:
        return None
    if hasattr(v, "tolist"):
        return v.tolist()
    if isinstance(v, float) and v != v:
        return None
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


def public_records(rows: pd.DataFrame, images: dict[str, bytes]) -> list[dict]:
    """One record per image (FEATURES): its pixels, global facts, MedTrinity caption and the list of its ROIs."""
    out = []
    for image_id, part in rows.groupby("image_id", sort=True):
        img = part[part["scope"] == "image"].iloc[0].to_dict()
        rois = part[part["scope"] == "roi"].sort_values("annotation_id").to_dict("records")
        caption = " ".join([img["caption"], *(best_caption(r) for r in rois)])
        out.append({
            "image": {"bytes": images[image_id], "path": f"{image_id}.png"}, "image_id": image_id,
            "source": img["dataset_id"], "also_in": _plain(img.get("also_in")) or [],
            **{k: _plain(img[k]) for k in ("modality", "view", "sequence", "body_region", "diagnosis", "axis",
                                            "slice_index", "orientation", "spacing", "structures",
                                            "unnamed_structures", "context_text", "pipeline_version",
                                            "config_fingerprint")},
            "width": int(img["image_width"]), "height": int(img["image_height"]), "global_caption": img["caption"],
            "caption": caption,
            "rois": [{k: ([{c: e[c] for c in RELATION} for e in _plain(r["relations"])] if k == "relations"
                          else _plain(r[k])) for k in ROI_FIELDS} for r in rois]})
    return out


def write_public(records: list[dict], folder: Path, max_shard_bytes: int) -> list[Path]:
    """roi_annotations/data/train-NNNNN-of-NNNNN.parquet, sharded by image bytes; returns the files."""
    shards, current, size = [], [], 0
    for rec in records:
        n = len(rec["image"]["bytes"]) + 4096
        if current and size + n > max_shard_bytes:
            shards.append(current)
            current, size = [], 0
        current.append(rec)
        size += n
    if current:
        shards.append(current)
    for stale in sorted((folder / FOLDER / "data").glob("*.parquet")):  # a re-export may write fewer shards
        stale.unlink()
    paths = []
    for k, part in enumerate(shards):
        table = pa.Table.from_pylist(part, schema=FEATURES.arrow_schema)
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd", row_group_size=128)
        path = folder / FOLDER / "data" / f"{SPLIT}-{k:05d}-of-{len(shards):05d}.parquet"
        atomic_write_bytes(path, buf.getvalue())
        paths.append(path)
    return paths


def write_private(rows: pd.DataFrame, links: pd.DataFrame, folder: Path) -> Path:
    """private/roi_annotations.parquet: the exam-linked rows, with why each image is linked."""
    cols = ROI_ANNOTATIONS.names
    table = pa.Table.from_pandas(rows[cols], schema=ROI_ANNOTATIONS, preserve_index=False)
    reason = rows["image_id"].map(dict(zip(links["image_id"], links["reason"])))
    table = table.append_column("exam_link", pa.array(reason.tolist(), pa.string()))
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    path = folder / PRIVATE
    atomic_write_bytes(path, buf.getvalue())
    return path


def read_public(folder: Path) -> pd.DataFrame:
    """image_id and PNG bytes of every published ROI image (what the leak check hashes)."""
    files = sorted((folder / FOLDER / "data").glob("*.parquet"))
    if not files:
        return pd.DataFrame({"image_id": [], "png": []})
    t = pa.concat_tables([pq.read_table(p, columns=["image_id", "image"]) for p in files])
    return pd.DataFrame({"image_id": t["image_id"].to_pylist(),
                         "png": [v["bytes"] for v in t["image"].to_pylist()]})
