"""ROI annotations on real masks: patient sides (mirrored and held orientations), exact areas,
intensity words, relations, the LLM paragraph's fact check against a local OpenAI-protocol server."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import yaml

from pipelines.annotate import measure, words
from pipelines.annotate.export import add_paragraphs
from pipelines.annotate.names import display_name
from pipelines.annotate.run import annotate_dataset, geometry_frame
from pipelines.annotate.text import fact_check
from pipelines.config import LLMSettings, PipelineConfig
from pipelines.ingest import ingest
from pipelines.llm import LLMClient
from pipelines.sources.registry import load_registry
from pipelines.standardize.regions import decode_rle
from pipelines.standardize.run import standardize_dataset
from tests.conftest import SHARED, SHARED_REGISTRY, needs_shared
from tests.openai_server import OpenAIServer

DS = "totalseg_ct_nifti"


def describe(cfg: PipelineConfig, ds: str = DS, first: int = 1):
    """samples, slices, regions of the first sample(s) of a dataset, and a vocabulary of raw labels."""
    src = load_registry(cfg.registry).get(ds)
    samples = ingest(src, cfg).samples.to_pandas()
    samples = samples[samples["name"].str.contains("ct_sm")] if ds == DS else samples.head(first)
    import pyarrow as pa
    std = standardize_dataset(src, cfg, pa.Table.from_pandas(samples, preserve_index=False), cfg.data_root)
    regions = std.regions.to_pandas()
    vocab = pd.DataFrame({"dataset_id": ds, "raw_label": sorted(regions["raw_label"].unique())})
    vocab = vocab.assign(canonical_label=vocab["raw_label"].str.replace("_", " "), mesh_id=None, task=None,
                         status="mesh", laterality=None, semantic_type="organ")
    return src, samples, std.slices.to_pandas(), regions, vocab


def axial_config(tmp_path, registry=SHARED_REGISTRY, **standardize) -> PipelineConfig:
    return PipelineConfig.load(registry=registry, data_root=tmp_path / "data").model_copy(update={
        "standardize": PipelineConfig().standardize.model_copy(update={"axes": ("axial",), **standardize})})


@pytest.fixture(scope="module")
def totalseg(tmp_path_factory):
    if not SHARED.is_dir():
        pytest.skip(f"real sample datasets not found at {SHARED}")
    cfg = axial_config(tmp_path_factory.mktemp("ts"))
    return cfg, *describe(cfg)


def liver_sides(geo: pd.DataFrame) -> tuple[set, set]:
    liver = geo[(geo["raw_label"] == "liver") & (geo["area_ratio"] > 0.02)]
    assert len(liver) >= 3
    return set(liver["patient_side"].str.split(",").str[0]), set(liver["position_h"])


@needs_shared
def test_liver_is_on_the_patients_right_and_the_viewers_left(totalseg):
    cfg, src, samples, slices, regions, vocab = totalseg
    assert set(slices["orientation"]) == {"LPS"} and set(slices["original_orientation"]) == {"RAS"}
    sides, image_h = liver_sides(geometry_frame(regions, slices, vocab))
    assert sides == {"patient's right"}
    assert image_h <= {"left", "left-centre"}  # radiological display: patient right on the viewer's left
    spleen = geometry_frame(regions, slices, vocab).query("raw_label == 'spleen' and area_ratio > 0.005")
    assert set(spleen["patient_side"].str.split(",").str[0]) == {"patient's left"}


@needs_shared
def test_flipped_plane_swaps_image_words_and_patient_side(totalseg):
    """Mirroring a plane's pixels (same orientation record) moves the liver to the viewer's right, which
    under the LPS display is the patient's left: both words follow the flip."""
    cfg, src, samples, slices, regions, vocab = totalseg
    flipped = regions.copy()
    w = flipped["width"].to_numpy(float)
    b = np.array(flipped["bbox"].tolist())
    flipped["bbox"] = list(np.stack([w - b[:, 2], b[:, 1], w - b[:, 0], b[:, 3]], 1))
    c = np.array(flipped["centroid"].tolist())
    flipped["centroid"] = list(np.stack([w - c[:, 0], c[:, 1]], 1))
    sides, image_h = liver_sides(geometry_frame(flipped, slices, vocab))
    assert sides == {"patient's left"} and image_h <= {"right", "right-centre"}


def mirrored_dataset(tmp_path, code: str):
    """A copy of the small TotalSegmentator case stored in another voxel order (same anatomy)."""
    root = tmp_path / "mirrored"
    for sub in ("images", "labels"):
        (root / sub).mkdir(parents=True)
        img = sitk.ReadImage(str(SHARED / DS / sub / "ct_sm.nii.gz"))
        sitk.WriteImage(sitk.DICOMOrient(img, code), str(root / sub / "ct_sm.nii.gz"))
    shutil.copy(SHARED / DS / "labels.json", root / "labels.json")
    doc = yaml.safe_load(SHARED_REGISTRY.read_text())
    entry = next(d for d in doc["datasets"] if d["id"] == DS)
    entry = {**entry, "root": str(root), "label_map": str(SHARED_REGISTRY.parent / entry["label_map"])}
    reg = tmp_path / "sources.yaml"
    reg.write_text(yaml.safe_dump({"version": 1, "datasets": [entry]}))
    return reg


@needs_shared
def test_mirrored_volume_and_held_orientation_keep_the_patient_side(tmp_path):
    reg = mirrored_dataset(tmp_path, "RAI")  # stored with z reversed relative to the original RAS
    cfg = axial_config(tmp_path, reg)
    _, _, slices, regions, vocab = describe(cfg)
    assert set(slices["original_orientation"]) == {"RAI"}
    sides, image_h = liver_sides(geometry_frame(regions, slices, vocab))
    assert sides == {"patient's right"} and image_h <= {"left", "left-centre"}
    # held in its stored orientation (no reorientation to LPS): the viewer's side changes, the patient's does not
    held = axial_config(tmp_path / "held", reg, canonical_orientation="RAI")
    _, _, slices, regions, vocab = describe(held)
    assert set(slices["orientation"]) == {"RAI"}
    sides, image_h = liver_sides(geometry_frame(regions, slices, vocab))
    assert sides == {"patient's right"} and image_h <= {"right", "right-centre"}


@needs_shared
def test_exact_area_ratios_and_position_words_rederived_from_masks(totalseg):
    cfg, src, samples, slices, regions, vocab = totalseg
    geo = geometry_frame(regions, slices, vocab)
    for r in geo[geo["kind"] == "mask"].head(300).itertuples():
        m = decode_rle(r.mask_rle, r.height, r.width)
        assert r.area_ratio == m.sum() / (r.width * r.height)  # exact, not rounded
        ys, xs = np.nonzero(m)
        cx, cy = xs.mean() / r.width, ys.mean() / r.height  # centroid of pixel indices, as regions record it
        h = ["left", "left-centre", "centre", "right-centre", "right"][min(int(cx * 5), 4)]
        v = ["top", "upper-middle", "middle", "lower-middle", "bottom"][min(int(cy * 5), 4)]
        assert (r.position_h, r.position_v) == (h, v), r.region_id
    assert words.area_text(0.0153) == "1.5%" and words.area_text(0.15) == "15.0%" and words.area_text(0.0004) == "0.04%"


@needs_shared
@pytest.mark.parametrize("delta,modality,expected", [(60.0, "CT", "hyperdense"), (-60.0, "CT", "hypodense"),
                                                     (0.0, "CT", "isodense"), (40.0, "T2 weighted MRI", "hyperintense"),
                                                     (-40.0, "MRI", "hypointense")])
def test_intensity_word_for_a_region_made_brighter_or_darker(totalseg, delta, modality, expected):
    cfg, src, samples, slices, regions, vocab = totalseg
    r = regions[(regions["raw_label"] == "liver")].sort_values("area_px").iloc[-1]
    mask = decode_rle(r["mask_rle"], r["height"], r["width"])
    rng = np.random.default_rng(0)
    values = rng.normal(40.0, 10.0, mask.shape)  # liver-like HU with noise
    values[mask] += delta
    bbox = tuple(int(v) for v in r["bbox"])
    ring = measure.ring_width(r["area_px"], cfg.annotate.ring_fraction, cfg.annotate.ring_min_px, cfg.annotate.ring_max_px)
    f = measure.measure_roi(values, np.clip(values, 0, 255), mask, bbox, ring, cfg.annotate.contrast_floor)
    assert f["mean_in"] == pytest.approx(40 + delta, abs=1.5) and f["mean_ring"] == pytest.approx(40, abs=1.5)
    assert words.intensity_word(f["contrast_d"], modality, cfg.annotate.iso_band) == expected


@needs_shared
def test_annotate_dataset_rows_hu_relations_and_captions(totalseg):
    cfg, src, samples, slices, regions, vocab = totalseg
    regions = regions.assign(dataset_id=DS)
    table = annotate_dataset(src, cfg, samples, slices, regions, vocab).to_pandas()
    roi, img = table[table["scope"] == "roi"], table[table["scope"] == "image"]
    assert len(roi) == len(regions) and len(img) == len(slices)  # every (named) region and every image
    assert (roi["fact_issues"].map(len) == 0).all()  # templates agree with their own fields
    assert set(roi["intensity_unit"]) == {"HU"}
    liver = roi[roi["raw_label"] == "liver"].sort_values("area_px").iloc[-1]
    assert 0 < liver["mean_in"] < 150  # soft-tissue HU, read before windowing
    assert 0 < liver["solidity"] <= 1 and 0 <= liver["elongation"] < 1
    rel = list(liver["relations"])
    assert rel and all(e["structure"] != "liver" for e in rel)
    assert "patient's right" in liver["caption"] and liver["area_text"] in liver["caption"]
    assert "the viewer's left shows the patient's right" in img["caption"].iloc[0]


def _paragraph(facts: dict, contradict: bool) -> str:
    side = facts["patient_side"].split(",")[0]
    word = facts["intensity_word"]
    if contradict:
        side = side.replace("right", "LEFT").replace("left", "right").replace("LEFT", "left")
        word = word.replace("hyper", "HYPO").replace("hypo", "hyper").replace("iso", "hyper").replace("HYPO", "hypo")
    return (f"On this {facts['plane']} {facts['modality']} image the {facts['name']} sits on the {side}, "
            f"{facts['position']}, covering {facts['area_text']} of the image ({facts['area_word']}); it appears "
            f"{word} compared with the tissue around it.")


@needs_shared
def test_llm_paragraph_contradicting_the_facts_is_flagged(totalseg, tmp_path):
    cfg, src, samples, slices, regions, vocab = totalseg
    table = annotate_dataset(src, cfg, samples, slices, regions.assign(dataset_id=DS), vocab).to_pandas()
    rows = table[(table["raw_label"] == "liver") & (table["area_ratio"] > 0.02)].head(4).reset_index(drop=True)
    replies = iter([False, True, False, True])
    calls = []

    def respond(body: dict) -> str:
        facts = json.loads(body["messages"][1]["content"])
        calls.append(facts)
        return json.dumps({"paragraph": _paragraph(facts, next(replies))})

    with OpenAIServer(respond) as server:
        client = LLMClient(LLMSettings(base_url=server.base_url, cache_dir=tmp_path / "cache", max_concurrency=1,
                                       max_retries=0, timeout_s=10), api_key="test-key")
        out, records = add_paragraphs(rows, client, cfg)
    assert len(calls) == 4 and all("liver" == c["name"] for c in calls)
    assert out["llm_fact_check"].tolist() == ["pass", "fail", "pass", "fail"]
    bad = out.loc[1, "llm_fact_issues"]
    assert any("contradicting side" in i for i in bad) and any("contradicting intensity" in i for i in bad)


def test_fact_check_reads_relation_phrases_as_other_structures():
    f = {"label": "liver", "name": "liver", "patient_side": "patient's right, anterior",
         "position_text": "left horizontally, top vertically", "intensity_word": "hypodense", "area_word": "large",
         "area_text": "30.0%", "area_ratio": 0.3, "relation_labels": ["stomach"]}
    ok = ("The liver lies on the patient's right, to the patient's right of the stomach, is hypodense and large "
          "(30.0%).")
    assert fact_check(ok, f) == []
    bad = "The liver lies on the patient's left, is hyperdense and small, about 3%."
    issues = fact_check(bad, f)
    assert {i.split(":")[0] for i in issues} >= {"contradicting side", "contradicting intensity",
                                                 "contradicting area word", "contradicting area"}


@needs_shared
def test_position_check_catches_mirrored_words(totalseg):
    from assets.annotate import position_mismatches
    cfg, src, samples, slices, regions, vocab = totalseg
    roi = annotate_dataset(src, cfg, samples, slices, regions.assign(dataset_id=DS), vocab).to_pandas()
    roi = roi[roi["scope"] == "roi"]
    assert position_mismatches(roi) == 0
    swapped = roi.assign(position_h=roi["position_h"].replace({"left": "right", "right": "left"}))
    assert position_mismatches(swapped) > 0


def test_display_names_keep_side_number_and_level():
    assert display_name("rib_left_9", "rib", "left") == "left 9th rib"
    assert display_name("rib_right_11", "rib", "right") == "right 11th rib"
    assert display_name("rib_right_2", "rib", "right") == "right 2nd rib"
    assert display_name("vertebrae_L2", "lumbar vertebrae", None) == "lumbar vertebrae (L2)"
    assert display_name("kidney_right", "kidney", "right") == "right kidney"
    assert display_name("lung_upper_lobe_left", "upper lobe of lung", "left") == "left upper lobe of lung"
    assert display_name("Lt Lung", "lung", "left") == "left lung"
    assert display_name("polyp", "polyp", None) == "polyp"


@pytest.mark.parametrize("modality,darker,brighter", [
    ("CT", "hypodense", "hyperdense"), ("T2 weighted MRI", "hypointense", "hyperintense"),
    ("Endoscopy", "darker", "brighter"), ("Dermoscopy", "darker", "brighter"),
    ("Fundus Photography", "darker", "brighter"), ("Microscopy", "more darkly stained", "paler"),
    ("Histopathology", "more darkly stained", "paler"), ("Electron Microscopy", "electron-dense", "electron-lucent"),
    ("X-ray", "more radiolucent", "more radiopaque"), ("Ultrasound", "hypoechoic", "hyperechoic")])
def test_intensity_words_follow_the_modality_family(modality, darker, brighter):
    assert words.intensity_word(-2.0, modality, 0.5) == darker
    assert words.intensity_word(2.0, modality, 0.5) == brighter


def test_fact_check_rejects_wrong_laterality_count_and_size():
    f = {"label": "kidney", "name": "left kidney", "laterality": "left", "patient_side": "patient's left, posterior",
         "position_text": "right-centre horizontally, middle vertically", "intensity_word": "hyperdense",
         "area_word": "small", "area_text": "3.0%", "area_ratio": 0.03, "relation_labels": ["spleen"],
         "count_on_plane": 1, "diameter_mm": 42.0, "area_mm2": 900.0}
    ok = ("The left kidney lies on the patient's left, hyperdense, small (3.0%), forming 1 region, about 42 mm "
          "across; it lies to the patient's right of the spleen.")
    assert fact_check(ok, f) == []
    issues = fact_check(ok.replace("The left kidney", "The left kidney, like the right kidney,"), f)
    assert any("contradicting laterality" in i for i in issues)
    assert any("contradicting count" in i for i in fact_check(ok.replace("1 region", "3 regions"), f))
    assert any("contradicting size" in i for i in fact_check(ok.replace("42 mm", "61 mm"), f))
    unsupported = {**f, "count_on_plane": None, "diameter_mm": None, "area_mm2": None}
    issues = fact_check(ok, unsupported)
    assert any("not marked exhaustive" in i for i in issues) and any("without a known pixel spacing" in i for i in issues)


@pytest.fixture(scope="module")
def annotated(tmp_path_factory):
    """Annotations of real samples from several registrations (a few samples each), with the vocabulary built by
    the pipeline from their label maps."""
    if not SHARED.is_dir():
        pytest.skip(f"real sample datasets not found at {SHARED}")
    from pipelines.vocab.build import DatasetLabels, build_vocab, kinds_by_label
    from pipelines.vocab.curated import load_curated
    from pipelines.vocab.mesh import load_mesh
    cfg = PipelineConfig.load(registry=SHARED_REGISTRY, data_root=tmp_path_factory.mktemp("ann") / "data")
    reg = load_registry(cfg.registry)
    keep = {"totalseg_ct_nifti": "ct_sm", "pyradiomics_mr_nifti": None, "kvasir_seg": None, "bccd_voc": 6,
            "dcmqi_ct_seg": None, "dcmqi_ct_series_nrrd": None, "isbi2012_em": 2, "pneumoniamnist_csv": 4}
    import pyarrow as pa
    parts, tables = [], {}
    for ds, which in keep.items():
        src = reg.get(ds)
        samples = ingest(src, cfg).samples.to_pandas()
        samples = (samples[samples["name"].str.contains(which)] if isinstance(which, str)
                   else samples.head(which) if which else samples)
        std = standardize_dataset(src, cfg, pa.Table.from_pandas(samples, preserve_index=False), cfg.data_root)
        tables[ds] = (src, samples, std.slices.to_pandas(), std.regions.to_pandas())
        parts.append(DatasetLabels(ds, src.entry.modality, src.entry.task_type, src.label_map, str(src.label_map_path),
                                   kinds_by_label(std.regions)))
    vocab = build_vocab(parts, load_mesh(), load_curated(), cfg.seed).to_pandas()
    ann = pd.concat([annotate_dataset(src, cfg, s, sl, r, vocab).to_pandas() for src, s, sl, r in tables.values()],
                    ignore_index=True)
    return cfg, vocab, ann, tables


@needs_shared
def test_thirty_seeded_annotations_hold_for_the_planes_rebuilt_from_the_sources(annotated):
    """Re-derived with nibabel/Pillow/ElementTree/scipy from the source files (tests/roi_rederive.py): no false
    "no other structure"/"labelled" statement, no merged side, no count of a non-exhaustive label, no
    unnamed label in the text, sizes in mm that match the header spacing."""
    from tests.roi_rederive import verify
    cfg, vocab, ann, _ = annotated
    res = verify(ann, vocab, SHARED_REGISTRY, n=30, seed=0)
    assert len(res) == 30 and res["dataset_id"].nunique() >= 6
    for check in ("own_mask", "no_other", "labelled", "relations", "merged_side", "counts", "size", "names"):
        assert (res[check].map(len) == 0).all(), res.loc[res[check].map(len) > 0, ["dataset_id", check]].to_dict("records")


@needs_shared
def test_rederivation_catches_planted_false_statements(annotated):
    """The independent check fails on what the earlier annotations said: a side-less relation, an incomplete
    labelled list, a "no other structure" beside other labels, a count of red blood cells."""
    from tests.roi_rederive import check, context_of, rebuild
    cfg, vocab, ann, _ = annotated
    roi = ann[(ann["dataset_id"] == DS) & (ann["scope"] == "roi") & (ann["other_labels"] > 2)].iloc[0].to_dict()
    entry, lm, names, named, exhaustive, forbidden = context_of(SHARED_REGISTRY, vocab, DS)
    plane = rebuild(entry, lm, roi)
    sided = next(r for r in plane.labels if r.endswith(("_left", "_right")) and r != roi["raw_label"])
    merged = {**roi, "relations": [{"structure": names[sided].split(" ", 1)[1].split(" ", 1)[-1], "side": "x"}]}
    assert check(merged, plane, names, named, exhaustive, forbidden)["merged_side"]
    lonely = {**roi, "caption": roi["caption"] + " No other structure is labelled on this plane."}
    assert check(lonely, plane, names, named, exhaustive, forbidden)["no_other"]
    img = ann[(ann["plane_id"] == roi["plane_id"]) & (ann["scope"] == "image")].iloc[0].to_dict()
    short = {**img, "caption": img["caption"].rsplit("Labelled on this plane:", 1)[0] + "Labelled on this plane: liver."}
    assert check(short, plane, names, named, exhaustive, forbidden)["labelled"]
    rbc = ann[(ann["dataset_id"] == "bccd_voc") & (ann["raw_label"] == "RBC")].iloc[0].to_dict()
    entry, lm, names, named, exhaustive, forbidden = context_of(SHARED_REGISTRY, vocab, "bccd_voc")
    counted = {**rbc, "caption": rbc["caption"] + " The red blood cell label forms 14 separate regions on this image."}
    assert check(counted, rebuild(entry, lm, rbc), names, named, exhaustive, forbidden)["counts"]


@needs_shared
def test_ct_windows_of_one_plane_share_its_labels_and_relations(annotated):
    """A CT plane rendered in several windows (liver, bone, lung): every image of it lists the same labels, and a
    structure of one window relates to the structures of the others."""
    cfg, vocab, ann, tables = annotated
    img = ann[(ann["dataset_id"] == DS) & (ann["scope"] == "image")]
    multi = img.groupby("plane_id").filter(lambda g: len(g) > 1)
    assert multi["plane_id"].nunique() > 10
    assert (multi.groupby("plane_id")["structures"].agg(lambda s: len({tuple(v) for v in s})) == 1).all()
    roi = ann[(ann["dataset_id"] == DS) & (ann["scope"] == "roi") & ann["plane_id"].isin(set(multi["plane_id"]))]
    slices = tables[DS][2].set_index("image_id")
    window = slices["intensity_params"].map(lambda p: json.loads(p).get("window"))
    related_across = 0
    for _, same_plane in roi.groupby("plane_id"):
        names = list(zip(same_plane["name"], same_plane["image_id"].map(window)))
        for r in same_plane.itertuples():
            other_window = {n for n, w in names if w != window[r.image_id]}
            related_across += bool(other_window & {e["structure"] for e in r.relations})
            assert "No other structure" not in r.caption  # every such plane holds labels of two windows
    assert related_across > 0


@needs_shared
def test_counts_names_and_colour_labels(annotated):
    cfg, vocab, ann, _ = annotated
    roi = ann[ann["scope"] == "roi"]
    from pipelines.annotate.checks import counts_without_exhaustive, unnamed_names
    assert counts_without_exhaustive(ann).empty and unnamed_names(ann, vocab).empty
    bccd = roi[roi["dataset_id"] == "bccd_voc"]
    assert bccd.loc[bccd["raw_label"] == "RBC", "count_on_plane"].isna().all()  # not exhaustive: no count
    assert bccd.loc[bccd["raw_label"] == "WBC", "count_on_plane"].notna().all()
    assert not bccd["caption"].str.contains("RBC|red blood cell label forms", regex=True).any()
    dcmqi = ann[ann["dataset_id"] == "dcmqi_ct_seg"]
    assert set(dcmqi.loc[dcmqi["scope"] == "roi", "raw_label"]) == {"Liver"}  # colour-named segments: no ROI rows
    text = " ".join(dcmqi["caption"]).lower()
    assert not any(w in text for w in ("citrus", "orange", "purple", "green", "blue"))
    assert dcmqi.loc[dcmqi["scope"] == "image", "unnamed_structures"].max() >= 1
    assert dcmqi["caption"].str.contains("labels? without a clinical name", regex=True).any()


@needs_shared
def test_lesion_layers_on_real_lesions(annotated):
    """Tumour (MR volume, header spacing) and polyp (2D JPEG, no spacing): margin, containing structure and its
    part, size in mm only where the spacing is known; the metadata sentence; intensity words of the family."""
    cfg, vocab, ann, _ = annotated
    roi = ann[(ann["scope"] == "roi") & ann["is_lesion"]]
    tumour = roi[roi["dataset_id"] == "pyradiomics_mr_nifti"]
    polyp = roi[roi["dataset_id"] == "kvasir_seg"]
    assert len(tumour) and len(polyp)
    assert tumour["diameter_mm"].notna().all() and polyp["diameter_mm"].isna().all()
    assert tumour["spacing_known"].all() and not polyp["spacing_known"].any()
    for part in (tumour, polyp):
        assert part["margin_word"].notna().all()
        assert part["container"].notna().mean() > 0.8 and part["container_position"].notna().mean() > 0.8
        held = part[part["container_ratio"].notna()]
        assert (held["container_ratio"] >= held["area_ratio"] - 5e-5).all()  # a share of a part of the image (4 decimals)
        assert (held["container_ratio"] <= 1).all()
        assert part["context_text"].str.contains("diagnosis label: ").all()
    assert set(tumour["intensity_word"]) <= {"hypointense", "isointense", "hyperintense"}
    assert set(polyp["intensity_word"]) <= {"darker", "of similar brightness", "brighter"}
    assert polyp["colour_word"].notna().all()
    # a 2D image's pixel spacing is not known: no mm anywhere in its text
    assert not ann.loc[ann["dataset_id"] == "kvasir_seg", "caption"].str.contains(" mm").any()
    cxr = ann[ann["dataset_id"] == "pneumoniamnist_csv"]
    assert cxr.loc[cxr["scope"] == "image", "diagnosis"].map(len).gt(0).all()


@needs_shared
def test_llm_paragraphs_of_lesions_are_fact_checked_and_cached(annotated, tmp_path):
    """Through a local OpenAI-protocol server: a paragraph that gives another size, a count for a label not marked
    exhaustive, or the other side is rejected (the caption keeps the template); a re-run is served from the cache."""
    from pipelines.annotate.export import best_caption
    cfg, vocab, ann, _ = annotated
    rows = ann[(ann["dataset_id"] == "pyradiomics_mr_nifti") & (ann["scope"] == "roi")
               & ann["patient_side"].str.contains("patient's", na=False)].head(4).reset_index(drop=True)
    assert len(rows) == 4 and rows["diameter_mm"].notna().all() and rows["count_on_plane"].isna().all()
    calls = []

    def respond(body: dict) -> str:
        f = json.loads(body["messages"][1]["content"])
        calls.append(f)
        k = len(calls) - 1
        side = f["patient_side"].split(",")[0]
        size = re.search(r"diameter (\d+\.\d) mm", f["lesion"]).group(1)
        size = {1: f"{float(size) * 2:.1f}"}.get(k, size)
        count = " It is one of 3 tumors on this plane." if k == 2 else ""
        if k == 3:
            side = side.replace("left", "RIGHT").replace("right", "left").replace("RIGHT", "right")
        return json.dumps({"paragraph": f"The {f['name']} on this {f['plane']} lies on the {side}, {f['position']}, "
                                        f"covering {f['area_text']} ({f['area_word']}); it is {f['intensity_word']}, "
                                        f"about {size} mm across.{count}"})

    settings = LLMSettings(base_url="", cache_dir=tmp_path / "cache", max_concurrency=1, max_retries=0, timeout_s=10)
    with OpenAIServer(respond) as server:
        client = LLMClient(settings.model_copy(update={"base_url": server.base_url}), api_key="test-key")
        out, _ = add_paragraphs(rows, client, cfg)
        again, _ = add_paragraphs(rows, LLMClient(settings.model_copy(update={"base_url": server.base_url}),
                                                  api_key="test-key"), cfg)
    assert len(calls) == 4  # the second run came from the cache
    assert out["llm_fact_check"].tolist() == ["pass", "fail", "fail", "fail"]
    assert any("contradicting size" in i for i in out.loc[1, "llm_fact_issues"])
    assert any("not marked exhaustive" in i for i in out.loc[2, "llm_fact_issues"])
    assert any("contradicting side" in i for i in out.loc[3, "llm_fact_issues"])
    assert again["llm_fact_check"].tolist() == out["llm_fact_check"].tolist()
    captions = [best_caption(r) for r in out.to_dict("records")]
    assert captions[0] == out.loc[0, "llm_paragraph"] and captions[1:] == out["caption"].tolist()[1:]


@pytest.mark.slow
@needs_shared
def test_no_public_roi_image_is_linked_to_a_test_item(shared_build):
    """On the ../shared build: every image partitioned as public shares no image id, pixels, group or leakage
    component with a test item (checked by independent joins); images identical to a test image across
    registrations (NIfTI/NRRD, DICOM SEG/series) are private; the check on published pixels flags a planted one."""
    import glob

    from pipelines.annotate.export import dedupe, partition, render_images
    from pipelines.annotate.leak import exam_images, published_leaks
    cfg = shared_build
    tables = cfg.data_root / "tables"
    slices = {p.stem: pd.read_parquet(p) for p in map(Path, glob.glob(str(tables / "slices" / "*.parquet")))}
    planes = pd.concat(slices.values(), ignore_index=True)
    bench = pd.read_parquet(tables / "benchmark.parquet")
    images = planes.assign(scope="image", annotation_id=planes["image_id"], kind="image", raw_label=None,
                           mask_rle=None, bbox=[[0.0, 0.0, 1.0, 1.0]] * len(planes), structures=[[]] * len(planes),
                           unnamed_structures=0, diagnosis=[[]] * len(planes))
    public, private, links = partition(images, bench, planes, cfg.benchmark.near_duplicate_bits)
    test = bench[bench["split"] == "test"]
    test_planes = planes[planes["image_id"].isin(set(test["image_id"]))]
    assert not set(public["image_id"]) & set(test["image_id"])
    assert not set(public["sha256"]) & set(test_planes["sha256"])
    assert not set(public["group_id"]) & set(test["group_id"])
    comps = set(test["split_group"])
    assert not set(public["group_id"]) & set(bench.loc[bench["split_group"].isin(comps), "group_id"])
    assert "pixel-identical to a test image" in set(links["reason"])  # a second registration of a test plane
    assert len(public) and len(dedupe(public)) <= len(public)
    # published pixels: a sample of public images passes, a test item's plane under a fresh id does not
    exam = exam_images(bench, planes)
    pick = pd.concat([public.head(3), test_planes.head(1)])
    ds = sorted(pick["dataset_id"].unique())
    pngs = render_images(pick, load_registry(cfg.registry),
                         {d: pd.read_parquet(tables / "raw_samples" / f"{d}.parquet") for d in ds}, slices, cfg)
    shown = pd.DataFrame({"image_id": public["image_id"].head(3), "png": [pngs[i] for i in public["image_id"].head(3)]})
    assert published_leaks(shown, planes, exam, cfg.benchmark.near_duplicate_bits).empty
    planted = pd.concat([shown, pd.DataFrame([{"image_id": "planted", "png": pngs[test_planes["image_id"].iloc[0]]}])])
    found = published_leaks(planted, planes, exam, cfg.benchmark.near_duplicate_bits)
    assert found.to_dict("records") == [{"image_id": "planted", "reason": "pixel-identical to a test image"}]


@needs_shared
def test_identical_images_of_two_registrations_become_one(annotated):
    """dcmqi's CT series is registered twice (labels from an NRRD and from a DICOM SEG): their planes have the same
    pixels. The export keeps one image id per pixel content, names the other registration in also_in, holds a
    region both registrations label (same label, same mask) once, and lists the labels of both."""
    from pipelines.annotate.export import dedupe
    cfg, vocab, ann, _ = annotated
    both = ann[ann["dataset_id"].isin(["dcmqi_ct_seg", "dcmqi_ct_series_nrrd"])]
    img = both[both["scope"] == "image"]
    shared = img.groupby("sha256")["dataset_id"].nunique()
    shared = set(shared[shared == 2].index)
    assert shared  # identical planes exist
    out = dedupe(both)
    oimg = out[out["scope"] == "image"]
    assert oimg["sha256"].is_unique and set(oimg["sha256"]) == set(img["sha256"])
    merged = oimg[oimg["sha256"].isin(shared)]
    assert merged["also_in"].map(len).eq(1).all()
    roi = out[(out["scope"] == "roi") & out["sha256"].isin(shared)]
    assert not roi.duplicated(["image_id", "raw_label", "mask_rle"]).any()
    assert set(roi["image_id"]) <= set(merged["image_id"])  # the copies' regions moved to the kept id
    before = both[(both["scope"] == "roi") & both["sha256"].isin(shared)]
    assert len(roi) == len(before.drop_duplicates(["sha256", "raw_label", "mask_rle"]))
    for r in merged.itertuples():
        labels = set().union(*(set(v) for v in img.loc[img["sha256"] == r.sha256, "structures"]))
        assert set(r.structures) == labels and all(n in r.caption for n in labels)
