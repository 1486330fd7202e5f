"""Small pools: curated, MeSH-checked fallback distractors with recorded origins, offered only where they are keys
elsewhere; region distractors from around the plane."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.config import PipelineConfig, QuestionSettings
from pipelines.candidates.options import PoolKey, distractor_candidates, pool_for
from pipelines.vocab.fallback import FALLBACK_PATH, FallbackError, load_fallback
from pipelines.vocab.hierarchy import Hierarchy
from pipelines.vocab.mesh import load_mesh

VOCAB = pd.DataFrame({"dataset_id": ["kv", "ct", "ct", "em"], "raw_label": ["polyp", "liver", "spleen", "cytoplasm"],
                      "canonical_label": ["polyp", "liver", "spleen", "cytoplasm"],
                      "mesh_id": ["D011127", "D008099", "D013154", "D003593"],
                      "tree_numbers": [["C23.300.825"], ["A03.620"], ["A15.382.520.604.700"], ["A11.284.430"]]})


def test_every_fallback_option_is_a_real_mesh_descriptor():
    fb = load_fallback()
    assert fb.groups and fb.problems(load_mesh()) == []
    for g in fb.groups:
        assert len(g.options) >= 2, g  # with the key, at least three options
        assert len({o.label for o in g.options}) == len(g.options)


def test_wrong_mesh_name_is_reported_with_the_file(tmp_path):
    bad = tmp_path / "fallback.yaml"
    bad.write_text("groups:\n  - {modality: CT, task: Bone, region: x, options: "
                   "[{label: heart, mesh_id: D006321, mesh_name: Liver}]}\n")
    problems = load_fallback(bad).problems(load_mesh(), bad)
    assert len(problems) == 1 and str(bad) in problems[0] and "Heart" in problems[0]
    (tmp_path / "broken.yaml").write_text("groups: [{modality: CT}]\n")
    with pytest.raises(FallbackError, match="broken.yaml"):
        load_fallback(tmp_path / "broken.yaml")


def test_fallback_options_must_be_keys_elsewhere():
    """A fallback option no item anywhere has as its key would leave the dataset's own label as the one option a
    reader ever sees as a key: it is offered only when another dataset of the modality asks about it."""
    h = Hierarchy.from_vocab(VOCAB)
    own = PoolKey("dataset:kv", "Endoscopy", "Disease Diagnosis", "mask")
    pools = {own: ["polyp"]}
    assert pool_for(pools, "kv", "Endoscopy", "Disease Diagnosis", "contour", ["polyp"], h) == \
        (["polyp"], {"polyp": "dataset"})
    pools[PoolKey("dataset:other", "Endoscopy", "Disease Diagnosis", "mask")] = ["ulcer", "colitis", "tumor"]
    pools[PoolKey("dataset:xr", "X-ray", "Disease Diagnosis", "mask")] = ["diverticulum"]  # another modality
    pool, origins = pool_for(pools, "kv", "Endoscopy", "Disease Diagnosis", "contour", ["polyp"], h)
    assert pool[0] == "polyp" and origins["polyp"] == "dataset"
    extra = sorted(p for p in pool if origins[p] == "fallback")
    assert extra == ["colitis", "ulcer"]  # in the fallback group and a key elsewhere; not tumor, not diverticulum
    assert set(distractor_candidates(["polyp"], {"polyp"}, pool, h)) == set(extra)
    # image level: a whole image may show an unannotated finding, so no fallback there
    assert pool_for(pools, "kv", "Endoscopy", "Disease Diagnosis", "image", ["polyp"], h) == ([], {})
    # an own pool with two certainly-wrong options is used alone
    big = {own: ["polyp", "ulcer", "diverticulum"]}
    pool, origins = pool_for(big, "kv", "Endoscopy", "Disease Diagnosis", "mask", ["polyp"], h)
    assert pool == ["polyp", "ulcer", "diverticulum"] and set(origins.values()) == {"dataset"}


def test_region_distractors_come_from_around_the_plane():
    """An abdominal slice's options are structures drawn near it in the same scan, never the humerus three
    hundred millimetres away."""
    h = Hierarchy.from_vocab(VOCAB)
    pools = {PoolKey("dataset:ct", "CT", "Organ Recognition - Abdomen", "mask"): ["liver", "spleen", "humerus",
                                                                                  "stomach"]}
    pool, _ = pool_for(pools, "ct", "CT", "Organ Recognition - Abdomen", "mask", ["liver"], h,
                       frozenset({"liver", "spleen", "stomach"}))
    assert pool == ["liver", "spleen", "stomach"]


def test_ancestor_rule_applies_to_fallback_options():
    """Fallback labels enter the hierarchy with their MeSH trees: mitochondria lie under cytoplasm."""
    h = Hierarchy.from_vocab(VOCAB)
    assert h.node("mitochondria").tree_numbers
    assert not h.compatible_distractor("cytoplasm", "mitochondria")
    assert h.compatible_distractor("cytoplasm", "ulcer")
    assert distractor_candidates(["cytoplasm"], set(), ["mitochondria", "heart"], h) == ["heart"]


def test_item_records_each_options_origin():
    from pipelines.candidates.assemble import _unit
    from pipelines.candidates.picker import TemplatePicker
    templates = pd.DataFrame([{"template_id": "t", "task": "Disease Diagnosis", "granularity": "mask",
                               "modality_family": "any", "text": "What is in the marked area of this <modality> image?",
                               "review_status": "accepted"}])
    pools = {PoolKey("dataset:kv", "Endoscopy", "Disease Diagnosis", "mask"): ["polyp"],
             PoolKey("dataset:other", "Endoscopy", "Disease Diagnosis", "mask"): ["ulcer", "colitis", "diverticulum",
                                                                                   "angiodysplasia", "hemorrhoids"]}
    row = {"answers": ["polyp"], "count": None, "dataset_id": "kv", "modality": "Endoscopy", "granularity": "mask",
           "clinical_vqa_task": "Disease Diagnosis", "question_family": "endoscopy", "image_labels": ["polyp"]}
    n_opts = []
    for seed in range(20):
        unit, why = _unit([row], np.random.default_rng(seed), TemplatePicker(templates), pools,
                          Hierarchy.from_vocab(VOCAB), QuestionSettings(), {}, PipelineConfig().generators)
        assert unit is not None, why
        assert unit["origins"]["polyp"] == "dataset"
        assert all(unit["origins"][o] == "fallback" for o in unit["options"][1:])
        n_opts.append(len(unit["options"]))
    assert min(n_opts) >= 2 and max(n_opts) == 5


def test_shipped_file_is_the_default():
    assert FALLBACK_PATH.name == "fallback_options.yaml" and FALLBACK_PATH.is_file()


def test_groups_cover_the_photographic_and_cellular_modalities():
    """Fundus, obstetric / breast / cardiac ultrasound, dermoscopy, endoscopy, histopathology and microscopy each
    have a MeSH-checked group (checked for ids above)."""
    fb = load_fallback()
    have = {(g.modality, g.task) for g in fb.groups}
    for modality, task in [("Fundus Photography", "Blood Vessels Recognition"), ("Fundus Photography", "Disease Diagnosis"),
                           ("Ultrasound", "Organ Recognition - Head and Neck"), ("Ultrasound", "Disease Diagnosis"),
                           ("Ultrasound", "Organ Recognition - Thorax"), ("Dermoscopy", "Disease Diagnosis"),
                           ("Endoscopy", "Disease Diagnosis"), ("Histopathology", "Cell Recognition"),
                           ("Microscopy", "Cell Recognition")]:
        assert (modality, task) in have, (modality, task)
    regions = {g.region for g in fb.groups if g.modality == "Ultrasound"}
    assert any("obstetric" in r for r in regions) and any("breast" in r for r in regions) \
        and any("cardiac" in r for r in regions)
