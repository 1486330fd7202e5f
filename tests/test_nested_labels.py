"""Nested labels and per-sequence visibility: a container or contained label is never a second right answer, and a
label the registration's sequence cannot show is never asked about."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.config import PipelineConfig, QuestionSettings
from pipelines.label_maps import LabelMap, LabelMapError, load_label_map
from pipelines.candidates.options import PoolKey
from pipelines.vocab.hierarchy import Hierarchy

VOCAB = pd.DataFrame({
    "dataset_id": ["brats"] * 4,
    "raw_label": ["whole tumor", "tumor core", "edema", "necrosis"],
    "canonical_label": ["whole tumor", "tumor core", "edema", "necrosis"],
    "mesh_id": [None] * 4, "tree_numbers": [[]] * 4,
    "contains": [["tumor core", "necrosis"], ["necrosis"], [], []]})


def test_declared_nesting_is_never_a_distractor():
    h = Hierarchy.from_vocab(VOCAB)
    assert not h.compatible_distractor("tumor core", "whole tumor")  # the outline of one encloses the other
    assert not h.compatible_distractor("whole tumor", "tumor core")
    assert not h.compatible_distractor("tumor core", "necrosis")
    assert h.compatible_distractor("edema", "tumor core")


def test_items_about_a_nested_region_offer_neither_container_nor_content():
    from pipelines.candidates.assemble import _unit
    from pipelines.candidates.picker import TemplatePicker
    templates = pd.DataFrame([{"template_id": "t", "task": "Disease Diagnosis", "granularity": "mask",
                               "modality_family": "any", "text": "What is outlined in this <modality> image?",
                               "review_status": "accepted"}])
    pools = {PoolKey("dataset:brats", "MRI", "Disease Diagnosis", "mask"): ["edema", "necrosis", "tumor core",
                                                                             "whole tumor"]}
    row = {"answers": ["tumor core"], "count": None, "dataset_id": "brats", "modality": "MRI", "granularity": "mask",
           "clinical_vqa_task": "Disease Diagnosis", "question_family": "radiology", "image_labels": []}
    offered = set()
    for seed in range(40):
        unit, why = _unit([row], np.random.default_rng(seed), TemplatePicker(templates), pools,
                          Hierarchy.from_vocab(VOCAB), QuestionSettings(), {}, PipelineConfig().generators)
        if unit is not None:
            offered |= set(unit["options"]) - {"tumor core"}
    assert offered == {"edema"}  # 'whole tumor' encloses the core, 'necrosis' lies inside it


def test_label_map_checks_nesting_and_visibility(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("values: {1: whole tumor, 2: tumor core}\nlabels:\n  whole tumor: {contains: [core]}\n")
    with pytest.raises(LabelMapError, match="contains"):
        load_label_map(bad)
    bad.write_text("values: {1: enhancing tumor}\nlabels:\n  enhancing tumor: {visible_on: [T9]}\n")
    with pytest.raises(LabelMapError, match="unknown modality"):
        load_label_map(bad)
    ok = tmp_path / "ok.yaml"
    ok.write_text("values: {1: whole tumor, 2: tumor core, 3: enhancing tumor}\nlabels:\n"
                  "  whole tumor: {contains: [tumor core, enhancing tumor]}\n"
                  "  enhancing tumor: {visible_on: [T1ce]}\n")
    lm = load_label_map(ok)
    assert lm.spec("enhancing tumor").visible_on == ["T1 contrast-enhanced MRI"]
    assert lm.spec("whole tumor").contains == ["tumor core", "enhancing tumor"]


def test_a_label_invisible_on_the_sequence_is_excluded():
    from collections import Counter

    from pipelines.vocab.build import DatasetLabels, build_vocab
    from pipelines.vocab.curated import load_curated
    from pipelines.vocab.mesh import load_mesh
    lm = LabelMap.model_validate({"values": {1: "enhancing tumor", 2: "edema"},
                                  "labels": {"enhancing tumor": {"visible_on": ["T1ce"]}}})
    rows = {}
    for modality in ("FLAIR MRI", "T1 contrast-enhanced MRI"):
        ds = DatasetLabels(f"d_{modality[:2]}", modality, "seg", lm, "lm.yaml",
                           {"enhancing tumor": Counter(mask=3), "edema": Counter(mask=3)})
        t = build_vocab([ds], load_mesh(), load_curated(), 1).to_pandas()
        rows[modality] = dict(zip(t["raw_label"], t["status"]))
    assert rows["FLAIR MRI"]["enhancing tumor"] == "excluded"
    assert rows["T1 contrast-enhanced MRI"]["enhancing tumor"] != "excluded"
    assert rows["FLAIR MRI"]["edema"] != "excluded"
