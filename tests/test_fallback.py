"""Small pools (issue 14, item 5): curated, MeSH-checked fallback distractors with recorded origins."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.config import PipelineConfig, QuestionSettings
from pipelines.questions.options import PoolKey, distractor_candidates, pool_for
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


def test_fallback_only_when_the_own_pool_is_too_small():
    h = Hierarchy.from_vocab(VOCAB)
    pools = {PoolKey("shared", "Endoscopy", "Disease Diagnosis", "mask"): ["polyp"]}
    pool, origins = pool_for(pools, "kv", "Endoscopy", "Disease Diagnosis", "contour", ["polyp"], h)
    assert pool[0] == "polyp" and origins["polyp"] == "dataset"
    extra = [p for p in pool if origins[p] == "fallback"]
    assert len(extra) >= 2 and "ulcer" in extra
    assert set(distractor_candidates(["polyp"], {"polyp"}, pool, h)) == set(extra)
    # image level: a whole image may show an unannotated finding, so no fallback there
    assert pool_for(pools, "kv", "Endoscopy", "Disease Diagnosis", "image", ["polyp"], h) == ([], {})
    # an own pool with two certainly-wrong options is used alone
    big = {PoolKey("shared", "Endoscopy", "Disease Diagnosis", "mask"): ["polyp", "ulcer", "diverticulum"]}
    pool, origins = pool_for(big, "kv", "Endoscopy", "Disease Diagnosis", "mask", ["polyp"], h)
    assert pool == ["polyp", "ulcer", "diverticulum"] and set(origins.values()) == {"dataset"}


def test_ancestor_rule_applies_to_fallback_options():
    """Fallback labels enter the hierarchy with their MeSH trees: mitochondria lie under cytoplasm."""
    h = Hierarchy.from_vocab(VOCAB)
    assert h.node("mitochondria").tree_numbers
    assert not h.compatible_distractor("cytoplasm", "mitochondria")
    assert h.compatible_distractor("cytoplasm", "ulcer")
    assert distractor_candidates(["cytoplasm"], set(), ["mitochondria", "heart"], h) == ["heart"]


def test_item_records_each_options_origin():
    from pipelines.questions.assemble import _unit
    from pipelines.questions.picker import TemplatePicker
    templates = pd.DataFrame([{"template_id": "t", "task": "Disease Diagnosis", "granularity": "mask",
                               "modality_family": "any", "text": "What is in the marked area of this <modality> image?",
                               "review_status": "accepted"}])
    pools = {PoolKey("shared", "Endoscopy", "Disease Diagnosis", "mask"): ["polyp"]}
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
