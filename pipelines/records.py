"""The record contract: one pyarrow schema per table the stages hand to each other.

Every table ends with the provenance columns (source dataset, source file relative to the
dataset root, pipeline version, seed). Rows are plain dicts validated against the schema
by :func:`to_table`, which fails loudly on a missing or unknown column.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pyarrow as pa

# The option letters of a multiple-choice item, in order; an item uses the first n_options of them.
LETTERS = "ABCDE"

PROVENANCE = [
    pa.field("dataset_id", pa.string(), nullable=False),
    pa.field("source_path", pa.string(), nullable=False),
    pa.field("pipeline_version", pa.string(), nullable=False),
    pa.field("seed", pa.int64(), nullable=False),
]

BOX = pa.struct([
    ("label", pa.string()),
    ("x0", pa.float64()), ("y0", pa.float64()), ("x1", pa.float64()), ("y1", pa.float64()),
])


def _schema(name: str, fields: list[pa.Field]) -> pa.Schema:
    return pa.schema(fields + PROVENANCE, metadata={b"medbench_table": name.encode()})


RAW_SAMPLES = _schema("raw_samples", [
    pa.field("sample_id", pa.string(), nullable=False),
    pa.field("group_id", pa.string(), nullable=False),
    pa.field("name", pa.string()),
    pa.field("image_refs", pa.list_(pa.string())),
    pa.field("label_ref", pa.string()),
    pa.field("dim", pa.int8()),
    pa.field("modality", pa.string()),
    pa.field("task_type", pa.string()),
    pa.field("labels", pa.list_(pa.string())),
    pa.field("boxes", pa.list_(BOX)),
    pa.field("label_values", pa.list_(pa.int64())),
    pa.field("shape", pa.list_(pa.int64())),
    pa.field("spacing", pa.list_(pa.float64())),  # mm, x then y (then z); empty when unknown
    pa.field("spacing_source", pa.string()),  # header | registry | table | unknown (pipelines/geometry.py)
    pa.field("orientation", pa.string()),
    pa.field("intensity_min", pa.float64()),
    pa.field("intensity_max", pa.float64()),
    pa.field("reader_meta", pa.string()),
])

QUARANTINE = _schema("quarantine", [
    pa.field("stage", pa.string(), nullable=False),
    pa.field("reason_code", pa.string(), nullable=False),
    pa.field("reason", pa.string(), nullable=False),
    pa.field("sample_id", pa.string()),
])

SLICES = _schema("slices", [
    pa.field("image_id", pa.string(), nullable=False),
    pa.field("sample_id", pa.string(), nullable=False),
    pa.field("group_id", pa.string(), nullable=False),
    pa.field("name", pa.string()),
    pa.field("modality", pa.string()),
    pa.field("axis", pa.string()),
    pa.field("index", pa.int64()),
    pa.field("orientation", pa.string()),
    pa.field("original_orientation", pa.string()),
    pa.field("spacing", pa.list_(pa.float64())),  # mm per pixel (column, row); empty when unknown
    pa.field("spacing_source", pa.string()),  # header | registry | table | unknown
    pa.field("intensity_transform", pa.string()),
    pa.field("intensity_params", pa.string()),
    pa.field("width", pa.int64()),
    pa.field("height", pa.int64()),
    pa.field("display_width", pa.int64()),  # after square-pixel resampling and the size bound
    pa.field("display_height", pa.int64()),
    pa.field("phash", pa.string()),  # 64-bit DCT pHash of the in-memory 8-bit plane, hex
    pa.field("contrast", pa.float64()),  # std of grey levels (near 0: blank)
    pa.field("png_path", pa.string()),  # empty unless standardize.write_pngs is 'all'
    pa.field("sha256", pa.string()),  # of the 8-bit RGB pixels (exact duplicates share it)
    pa.field("faint_labels", pa.list_(pa.string())),  # raw labels with a cross-section below the region floor here
    pa.field("content_bbox", pa.list_(pa.float64())),  # x0, y0, x1, y1 of the non-dark pixels (body, field of view)
])

REGIONS = _schema("regions", [
    pa.field("region_id", pa.string(), nullable=False),
    pa.field("image_id", pa.string(), nullable=False),
    pa.field("sample_id", pa.string(), nullable=False),
    pa.field("group_id", pa.string(), nullable=False),
    pa.field("name", pa.string()),
    pa.field("kind", pa.string()),  # image | box | mask
    pa.field("raw_label", pa.string()),
    pa.field("labels", pa.list_(pa.string())),
    pa.field("component_index", pa.int64()),
    pa.field("mask_rle", pa.string()),  # COCO compressed RLE counts of a height x width mask
    pa.field("area_px", pa.int64()),
    pa.field("area_pct", pa.float64()),
    pa.field("bbox", pa.list_(pa.float64())),  # x0, y0, x1, y1 (pixel edges)
    pa.field("centroid", pa.list_(pa.float64())),  # x, y
    pa.field("width", pa.int64()),
    pa.field("height", pa.int64()),
    pa.field("outline_filled", pa.bool_()),  # the mask was a closed outline; the region is what it encloses
    # volume planes only: contrast-to-noise of the region against a 3-px band around it on the plane shown;
    # null where the mask or box was drawn on the very image shown (2D)
    pa.field("ring_cnr", pa.float64()),
])

LABEL_VOCAB = _schema("label_vocab", [
    pa.field("raw_label", pa.string(), nullable=False),
    pa.field("canonical_label", pa.string(), nullable=False),
    pa.field("status", pa.string(), nullable=False),  # mesh | no_mesh | accepted | excluded | unresolved
    pa.field("mesh_id", pa.string()),
    pa.field("mesh_name", pa.string()),
    pa.field("tree_numbers", pa.list_(pa.string())),
    pa.field("reason", pa.string()),  # why there is no MeSH id, or why the label is unresolved
    pa.field("rules_fired", pa.list_(pa.string())),
    pa.field("laterality", pa.string()),
    pa.field("semantic_type", pa.string()),
    pa.field("task", pa.string()),
    pa.field("department", pa.string()),
    pa.field("modality", pa.string()),
    pa.field("gmai_modality", pa.string()),
    pa.field("task_type", pa.string()),
    pa.field("granularities", pa.list_(pa.string())),
    pa.field("regions", pa.int64()),
    pa.field("tag_origin", pa.string()),  # JSON: tag -> rule that decided it
    pa.field("tag_issues", pa.list_(pa.string())),
    pa.field("contains", pa.list_(pa.string())),  # raw labels of the same dataset nested inside this one
])

CANDIDATES = _schema("qa_candidates", [
    pa.field("unit_id", pa.string(), nullable=False),  # one question; mask/contour twins share it
    pa.field("item_id", pa.string(), nullable=False),
    pa.field("prompt_id", pa.string(), nullable=False),
    pa.field("target_id", pa.string()),  # the instance, the label group, the box or the image region
    pa.field("member_region_ids", pa.list_(pa.string())),
    pa.field("image_id", pa.string(), nullable=False),
    pa.field("sample_id", pa.string(), nullable=False),
    pa.field("group_id", pa.string(), nullable=False),
    pa.field("scope", pa.string()),  # image | label | instance
    pa.field("granularity", pa.string()),  # image | box | mask | contour
    pa.field("labels", pa.list_(pa.string())),  # raw labels
    pa.field("answers", pa.list_(pa.string())),  # canonical answer(s), or the count
    pa.field("image_labels", pa.list_(pa.string())),  # raw labels of every region on the image (never offered at image level)
    pa.field("nearby_labels", pa.list_(pa.string())),  # canonical labels around a plane of a volume (its distractors come from them)
    pa.field("answer_label", pa.string()),
    pa.field("count", pa.int64()),  # counting questions only
    pa.field("count_label", pa.string()),
    pa.field("clinical_vqa_task", pa.string()),
    pa.field("department", pa.string()),
    pa.field("semantic_type", pa.string()),
    pa.field("modality", pa.string()),
    pa.field("gmai_modality", pa.string()),
    pa.field("question_family", pa.string()),
    pa.field("original_task", pa.string()),
    pa.field("pool_size", pa.int64()),
    pa.field("distractors_available", pa.int64()),
    pa.field("axis", pa.string()),
    pa.field("slice_index", pa.int64()),
    pa.field("position", pa.float64()),  # 0..1 along the axis; 0.5 for 2D images
    pa.field("phash", pa.string()),
    pa.field("contrast", pa.float64()),
    pa.field("image_width", pa.int64()),  # display geometry of the image the item will show
    pa.field("image_height", pa.int64()),
    pa.field("mark_pixels", pa.float64()),  # display pixels of the marked structure (null: no mark)
    pa.field("mark_fraction", pa.float64()),
    pa.field("mark_min_side", pa.float64()),
    pa.field("mark_bbox", pa.list_(pa.float64())),  # display px
    pa.field("border_only", pa.bool_()),
    pa.field("spacing_source", pa.string()),  # where the plane's pixel size came from: header | registry | table | unknown
    pa.field("generator", pa.string()),  # recognition | box_count | size_compare | size_ratio | ... (see generators)
    pa.field("generator_params", pa.string()),  # JSON: parameters, computed values and the marks (colour, regions)
    pa.field("balance_group", pa.string()),  # units whose keys selection keeps equally frequent (null: none)
])

GATE_VERDICTS = _schema("gate_verdicts", [
    pa.field("unit_id", pa.string(), nullable=False),
    pa.field("gate", pa.string(), nullable=False),  # '' passed, else the first rule it failed
    pa.field("failed", pa.list_(pa.string())),  # every rule it failed
])

RENDERED_ITEMS = _schema("rendered_items", [
    pa.field("item_id", pa.string(), nullable=False),
    pa.field("image_path", pa.string(), nullable=False),  # relative to the data root
    pa.field("width", pa.int64()),
    pa.field("height", pa.int64()),
    pa.field("render_params", pa.string()),  # JSON: colour, alpha/thickness, display scale, red surroundings
    pa.field("sha256", pa.string()),
    pa.field("phash", pa.string()),  # pHash of the image as exported (marks drawn): the export's leakage evidence
    pa.field("mark_pixels", pa.int64()),  # pixels of a prompt colour in the image as exported (the mark check)
    pa.field("mirror_key", pa.string()),  # shared with the image's left-right mirror (imageio.mirror_key)
])

QUESTION_TEMPLATES = _schema("question_templates", [
    pa.field("template_id", pa.string(), nullable=False),
    pa.field("task", pa.string()),
    pa.field("granularity", pa.string()),  # image | box | mask (mask templates also serve contour twins)
    pa.field("modality_family", pa.string()),  # a QUESTION_FAMILY, or 'any' for bank templates
    pa.field("semantic_type", pa.string()),
    pa.field("text", pa.string()),
    pa.field("origin", pa.string()),  # bank | llm:<model>
    pa.field("prompt_hash", pa.string()),
    pa.field("validation", pa.list_(pa.string())),
    pa.field("review_status", pa.string()),  # auto_accepted | accepted | needs_review | rejected
])

QA_ITEMS = _schema("qa_items", [
    pa.field("index", pa.int64()),
    pa.field("item_id", pa.string(), nullable=False),
    pa.field("unit_id", pa.string()),  # twins (mask/contour of one region) share it
    pa.field("question", pa.string()),
    pa.field("A", pa.string()), pa.field("B", pa.string()), pa.field("C", pa.string()),
    pa.field("D", pa.string()), pa.field("E", pa.string()),
    pa.field("answer", pa.string()),  # one letter, or letters joined by ',' when multi_answer
    pa.field("answer_label", pa.string()),
    pa.field("multi_answer", pa.bool_()),
    pa.field("n_options", pa.int64()),
    pa.field("clinical_vqa_task", pa.string()),
    pa.field("department", pa.string()),
    pa.field("perceptual_granularity", pa.string()),
    pa.field("granularity", pa.string()),
    pa.field("modality", pa.string()),
    pa.field("gmai_modality", pa.string()),
    pa.field("original_task", pa.string()),
    pa.field("semantic_type", pa.string()),
    pa.field("group_id", pa.string()),
    pa.field("image_id", pa.string()),
    pa.field("prompt_id", pa.string()),
    pa.field("image_path", pa.string()),
    pa.field("template_id", pa.string()),
    pa.field("pool_size", pa.int64()),
    pa.field("split", pa.string()),
    pa.field("split_group", pa.string()),  # leakage component: groups joined by identical or near-identical planes
    pa.field("generator", pa.string()),  # which question generator made the item
    pa.field("generator_params", pa.string()),  # JSON: its parameters, computed values and marks
    pa.field("source_region_ids", pa.list_(pa.string())),  # the regions the question is about
    pa.field("variant_of", pa.string()),  # the item this one is a mirrored or perturbed copy of
    pa.field("variant", pa.string()),  # JSON: kind (mirror, gaussian_noise, ...), severity, parameters
    pa.field("subset", pa.string()),  # main | consistency | robustness | grounding (each exported as its own config)
    pa.field("option_origins", pa.list_(pa.string())),  # per option A..E: dataset | fallback | generated (counts)
    pa.field("box", pa.list_(pa.float64())),  # grounding items: the answer, [x0, y0, x1, y1] in 0..1 of the image
])

F64, STR, LIST_F64 = pa.float64(), pa.string(), pa.list_(pa.float64())
RELATION = pa.struct([("structure", pa.string()), ("raw_label", pa.string()), ("relation", pa.string()),
                      ("side", pa.string()), ("distance", pa.float64())])

ROI_ANNOTATIONS = _schema("roi_annotations", [  # one row per named region (scope roi) and per image (scope image)
    pa.field("annotation_id", STR, nullable=False),
    pa.field("scope", STR, nullable=False),  # roi | image
    pa.field("region_id", STR), pa.field("image_id", STR, nullable=False),
    pa.field("plane_id", STR),  # the source plane: every CT window rendering of it shares the id
    pa.field("sample_id", STR), pa.field("group_id", STR), pa.field("sha256", STR),  # of the image's 8-bit pixels
    # global and metadata context
    pa.field("modality", STR), pa.field("body_region", STR), pa.field("axis", STR), pa.field("slice_index", pa.int64()),
    pa.field("orientation", STR), pa.field("original_orientation", STR),
    pa.field("spacing", LIST_F64), pa.field("spacing_known", pa.bool_()),  # spacing: null unless read from a header
    pa.field("image_width", pa.int64()), pa.field("image_height", pa.int64()),
    pa.field("sequence", STR), pa.field("view", STR), pa.field("diagnosis", pa.list_(STR)), pa.field("context_text", STR),
    pa.field("structures", pa.list_(STR)),  # image rows: the named labels of the whole plane
    pa.field("unnamed_structures", pa.int64()),  # image rows: labels of the plane that carry no name
    pa.field("other_labels", pa.int64()),  # roi rows: other labels of the plane, named or not
    pa.field("other_instances", pa.int64()),  # roi rows: other regions (or specks) of the same label on the plane
    # local ROI
    pa.field("kind", STR), pa.field("raw_label", STR), pa.field("label", STR), pa.field("name", STR),
    pa.field("laterality", STR), pa.field("semantic_type", STR), pa.field("mesh_id", STR),
    pa.field("bbox", LIST_F64), pa.field("bbox_norm", LIST_F64),  # x0, y0, x1, y1 (stored pixels; 0..1)
    pa.field("mask_rle", STR),  # COCO RLE of the ROI (masks only): the structure, kept apart from the image
    pa.field("area_px", pa.int64()), pa.field("area_ratio", F64), pa.field("area_word", STR), pa.field("area_text", STR),
    pa.field("centroid", LIST_F64), pa.field("centroid_norm", LIST_F64),
    pa.field("exhaustive", pa.bool_()),  # the label map says every instance of this label is annotated
    pa.field("count_on_plane", pa.int64()),  # separate regions of the label on the plane (exhaustive labels only)
    pa.field("position_h", STR), pa.field("position_v", STR), pa.field("position_text", STR),
    pa.field("patient_side", STR),  # null when the orientation is not recorded
    # texture / intensity (inside vs a ring around the ROI)
    pa.field("intensity_unit", STR),  # HU | raw | grey8
    pa.field("mean_in", F64), pa.field("std_in", F64), pa.field("mean_ring", F64), pa.field("std_ring", F64),
    pa.field("contrast_d", F64), pa.field("ring_px", pa.int64()), pa.field("intensity_word", STR),
    pa.field("mean_rgb", LIST_F64), pa.field("colour_word", STR),  # colour images only
    pa.field("boundary_sharpness", F64), pa.field("boundary_word", STR),
    pa.field("elongation", F64), pa.field("solidity", F64), pa.field("shape_word", STR),
    # lesion attributes (semantic type lesion) and the structure containing the ROI
    pa.field("is_lesion", pa.bool_()),
    pa.field("diameter_mm", F64), pa.field("area_mm2", F64),  # only when the spacing is known
    pa.field("margin_word", STR), pa.field("multiplicity", STR),  # multiplicity: exhaustive labels only
    pa.field("container", STR), pa.field("container_source", STR),  # label | foreground
    pa.field("container_ratio", F64), pa.field("container_position", STR),
    # local-global relation
    pa.field("relations", pa.list_(RELATION)),
    pa.field("relation_text", STR),
    # text
    pa.field("caption", STR), pa.field("fact_issues", pa.list_(STR)),
    pa.field("llm_paragraph", STR), pa.field("llm_model", STR), pa.field("llm_prompt_hash", STR),
    pa.field("llm_fact_check", STR),  # pass | fail | not_generated | error
    pa.field("llm_fact_issues", pa.list_(STR)),
    pa.field("config_fingerprint", STR),
])

SCHEMAS: dict[str, pa.Schema] = {
    "raw_samples": RAW_SAMPLES,
    "quarantine": QUARANTINE,
    "slices": SLICES,
    "regions": REGIONS,
    "label_vocab": LABEL_VOCAB,
    "question_templates": QUESTION_TEMPLATES,
    "qa_candidates": CANDIDATES,
    "gate_verdicts": GATE_VERDICTS,
    "rendered_items": RENDERED_ITEMS,
    "benchmark": QA_ITEMS,
    "roi_annotations": ROI_ANNOTATIONS,
}


class SchemaError(ValueError):
    """A row does not match its table's schema."""


def to_table(rows: Iterable[Mapping[str, object]], schema: pa.Schema) -> pa.Table:
    """Validate rows against ``schema`` (exact column set) and build a table in schema order."""
    rows = list(rows)
    names = set(schema.names)
    for i, row in enumerate(rows):
        keys = set(row)
        if keys != names:
            raise SchemaError(
                f"row {i} of {schema.metadata.get(b'medbench_table', b'?').decode()}: "
                f"missing {sorted(names - keys)}, unknown {sorted(keys - names)}"
            )
    return pa.Table.from_pylist(rows, schema=schema)
