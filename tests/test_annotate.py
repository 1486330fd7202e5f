"""ROI annotations on real masks: patient sides (mirrored and held orientations), exact areas,
intensity words, relations, the LLM paragraph's fact check against a local OpenAI-protocol server."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import yaml

from pipelines.annotate import measure, words
from pipelines.annotate.export import add_paragraphs
from pipelines.annotate.run import annotate_dataset, geometry_frame
from pipelines.annotate.text import fact_check
from pipelines.config import LLMSettings, PipelineConfig
from pipelines.ingest import ingest
from pipelines.questions.llm import LLMClient
from pipelines.registry import load_registry
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
    vocab = vocab.assign(canonical_label=vocab["raw_label"].str.replace("_", " "), mesh_id=None, task=None)
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
    assert len(roi) == len(regions) and len(img) == len(slices)  # every region and every image
    assert (roi["fact_issues"].map(len) == 0).all()  # templates agree with their own fields
    assert set(roi["intensity_unit"]) == {"HU"}
    liver = roi[roi["raw_label"] == "liver"].sort_values("area_px").iloc[-1]
    assert 0 < liver["mean_in"] < 150  # soft-tissue HU, read before windowing
    assert 0 < liver["solidity"] <= 1 and 0 <= liver["elongation"] < 1
    rel = json.loads(liver["relations"])
    assert rel and all(e["structure"] != "liver" for e in rel)
    assert "patient's right" in liver["caption"] and liver["area_text"] in liver["caption"]
    assert "the viewer's left shows the patient's right" in img["caption"].iloc[0]


def _paragraph(facts: dict, contradict: bool) -> str:
    side = facts["patient_side"].split(",")[0]
    word = facts["intensity_word"]
    if contradict:
        side = side.replace("right", "LEFT").replace("left", "right").replace("LEFT", "left")
        word = word.replace("hyper", "HYPO").replace("hypo", "hyper").replace("iso", "hyper").replace("HYPO", "hypo")
    return (f"On this {facts['plane']} {facts['modality']} image the {facts['label']} sits on the {side}, "
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
    assert len(calls) == 4 and all("liver" == c["label"] for c in calls)
    assert out["llm_fact_check"].tolist() == ["pass", "fail", "pass", "fail"]
    bad = out.loc[1, "llm_fact_issues"]
    assert any("contradicting side" in i for i in bad) and any("contradicting intensity" in i for i in bad)


def test_fact_check_reads_relation_phrases_as_other_structures():
    f = {"label": "liver", "patient_side": "patient's right, anterior", "position_text": "left horizontally, top vertically",
         "intensity_word": "hypodense", "area_word": "large", "area_text": "30.0%", "area_ratio": 0.3,
         "relation_labels": ["stomach"]}
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
