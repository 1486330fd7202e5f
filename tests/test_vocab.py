"""Label vocabulary: MeSH loading, normalization rules, hierarchy, tagging, lexical tree."""

from __future__ import annotations

import csv
import gzip
import json
from collections import Counter

import pandas as pd
import pytest

from pipelines.config import PROJECT_ROOT
from pipelines.label_maps import LabelMap
from pipelines.vocab.build import DatasetLabels, VocabError, build_vocab
from pipelines.vocab.curated import load_curated
from pipelines.vocab.hierarchy import Hierarchy, Node, relation_of
from pipelines.vocab.mesh import MeshError, load_mesh
from pipelines.vocab.normalize import Normalizer
from pipelines.vocab.tagging import Hints, Tagger
from pipelines.taxonomy import DEPARTMENTS, SEMANTIC_TYPES, TASKS
from pipelines.vocab.tree import lexical_tree, select, tree_html
from tests.conftest import needs_shared

FULL_MESH = PROJECT_ROOT.parent / "shared" / "mesh"
CASES = list(csv.DictReader((PROJECT_ROOT / "tests" / "data" / "label_cases.tsv").open(), delimiter="\t"))


@pytest.fixture(scope="module")
def normalizer() -> Normalizer:
    return Normalizer(load_mesh(), load_curated())


def test_case_table_is_large_enough():
    assert len(CASES) >= 40
    assert {c["rule"] for c in CASES} >= {"abbreviation", "synonym", "laterality", "spelling", "form",
                                          "context_synonym", "numbering"}


@pytest.mark.parametrize("case", CASES, ids=[c["raw"] for c in CASES])
def test_raw_label_normalizes(normalizer, case):
    res = normalizer.resolve(case["raw"], case["context"] or None)
    assert res.canonical_label == case["canonical"]
    assert (res.mesh_id or "-") == case["mesh_id"]
    if case["rule"]:
        assert case["rule"] in res.rules, res.rules
    assert (res.side or "") == case["side"]
    assert res.status in ("mesh", "no_mesh")
    if res.status == "no_mesh":
        assert res.reason  # a label without a descriptor says why


@needs_shared
def test_expected_ids_exist_in_full_mesh():
    full = load_mesh(FULL_MESH)
    for case in CASES:
        if case["mesh_id"] != "-":
            assert full.get(case["mesh_id"]) is not None, case
    assert load_curated().problems(full) == []


def test_shipped_subset_matches_manifest():
    manifest = json.loads((PROJECT_ROOT / "mesh_vocab" / "MANIFEST.json").read_text())
    assert manifest["mesh_version"] == "2024"
    mesh = load_mesh()
    assert len(mesh.descriptors) == manifest["descriptors"]
    assert load_curated().problems(mesh) == []


@needs_shared
def test_subset_builder_is_deterministic(tmp_path):
    from pipelines.vocab.subset import build_subset
    a = build_subset(FULL_MESH, tmp_path / "a", branches=("A02",), extra_ids={"D018594"})
    b = build_subset(FULL_MESH, tmp_path / "b", branches=("A02",), extra_ids={"D018594"})
    assert a["files"] == b["files"]
    sub = load_mesh(tmp_path / "a")
    assert sub.get("D005269").name == "Femur" and sub.get("D018594") is not None
    assert sub.get("D008099") is None  # liver is not under A02


def test_loads_nlm_descriptor_xml(tmp_path):
    xml = """<?xml version="1.0"?>
<DescriptorRecordSet LanguageCode="eng">
 <DescriptorRecord DescriptorClass="1">
  <DescriptorUI>D007668</DescriptorUI><DescriptorName><String>Kidney</String></DescriptorName>
  <TreeNumberList><TreeNumber>A05.810.453</TreeNumber></TreeNumberList>
  <ConceptList><Concept PreferredConceptYN="Y"><TermList>
   <Term ConceptPreferredTermYN="Y" IsPermutedTermYN="N" LexicalTag="NON" RecordPreferredTermYN="Y"><TermUI>T1</TermUI><String>Kidney</String></Term>
   <Term ConceptPreferredTermYN="N" IsPermutedTermYN="N" LexicalTag="NON" RecordPreferredTermYN="N"><TermUI>T2</TermUI><String>Kidneys</String></Term>
  </TermList></Concept></ConceptList>
 </DescriptorRecord>
</DescriptorRecordSet>"""
    path = tmp_path / "desc2024.xml.gz"
    path.write_bytes(gzip.compress(xml.encode()))
    mesh = load_mesh(path)
    assert mesh.version == "2024" and mesh.lookup("kidneys") == {"D007668"}
    assert mesh.get("D007668").tree_numbers == ("A05.810.453",)
    with pytest.raises(MeshError, match="no DescriptorRecord"):
        (tmp_path / "empty.xml").write_text("<DescriptorRecordSet/>")
        load_mesh(tmp_path / "empty.xml")


def test_check_id_rejects_unknown_and_mismatched():
    mesh = load_mesh()
    assert mesh.check_id("D007668", "Kidney") is None
    assert "not a descriptor" in mesh.check_id("D999999", "Kidney")
    assert "not one of its entry terms" in mesh.check_id("D007668", "Liver")
    assert "not a MeSH descriptor id" in mesh.check_id("kidney")


def _ds(labels: dict, kinds: dict[str, str], **lm) -> DatasetLabels:
    return DatasetLabels("toy", lm.pop("modality", "CT"), "seg", LabelMap(labels=labels, **lm), "label_maps/toy.yaml",
                         {k: Counter({v: 3}) for k, v in kinds.items()})


def test_label_map_pin_with_wrong_name_fails_validation():
    ds = _ds({"kidney": {"canonical": "kidney", "mesh_id": "D007668", "mesh_name": "Liver"}}, {"kidney": "mask"})
    with pytest.raises(VocabError, match=r"label_maps/toy.yaml, label 'kidney': D007668 is 'Kidney'"):
        build_vocab([ds], load_mesh(), load_curated(), seed=1)


def test_unresolved_is_reported_and_accept_is_explicit():
    mesh, cur = load_mesh(), load_curated()
    t = build_vocab([_ds({"zork blob": None, "ptv margin": {"accept": "planning volume"}},
                         {"zork blob": "mask", "ptv margin": "mask"})], mesh, cur, seed=1).to_pandas()
    status = dict(zip(t["raw_label"], t["status"]))
    assert status == {"zork blob": "unresolved", "ptv margin": "accepted"}
    assert "no curated concept" in t.set_index("raw_label").loc["zork blob", "reason"]
    assert t.set_index("raw_label").loc["zork blob", "tag_issues"].size > 0


def test_laterality_merges_and_keeps_side():
    t = build_vocab([_ds({}, {"kidney_left": "mask", "kidney_right": "mask"})], load_mesh(), load_curated(),
                    seed=1).to_pandas()
    assert set(t["canonical_label"]) == {"kidney"} and set(t["laterality"]) == {"left", "right"}
    assert list(t["granularities"].iloc[0]) == ["contour", "mask"]


def test_pinned_labels_keep_their_side():
    """A label map that pins the canonical form ('hip_left' -> hip bone) still records the raw label's side, so the
    left and the right bone stay two structures wherever they are named."""
    lm = {"hip_left": {"canonical": "hip bone", "mesh_id": "D010384", "mesh_name": "Pelvic Bones"},
          "hip_right": {"canonical": "hip bone", "mesh_id": "D010384", "mesh_name": "Pelvic Bones"},
          "gluteus_maximus_left": {"canonical": "gluteus maximus", "no_mesh": "no descriptor"},
          "rib_left_9": {"canonical": "rib"}}
    t = build_vocab([_ds(lm, {k: "mask" for k in lm})], load_mesh(), load_curated(), seed=1).to_pandas()
    side = dict(zip(t["raw_label"], t["laterality"]))
    assert side == {"hip_left": "left", "hip_right": "right", "gluteus_maximus_left": "left", "rib_left_9": "left"}
    assert set(t.loc[t["raw_label"].str.startswith("hip"), "canonical_label"]) == {"hip bone"}


def test_hierarchy_relations():
    mesh = load_mesh()
    def node(ui, label):
        return Node(label, ui, mesh.get(ui).tree_numbers or ("C04",))
    neo, liver_neo, liver = node("D009369", "tumor"), node("D008113", "liver tumor"), node("D008099", "liver")
    assert relation_of(neo, liver_neo) == "ancestor"
    assert relation_of(liver_neo, neo) == "descendant"
    assert relation_of(liver, liver_neo) == "unrelated"
    assert relation_of(Node("pulmonary nodule", "D003074", ()), Node("lung nodule", "D003074", ())) == "synonym"
    assert relation_of(Node("High-grade dysplasia", None, ()), Node("high grade dysplasia", None, ())) == "synonym"
    vocab = pd.DataFrame({"canonical_label": ["tumor", "liver tumor", "liver"], "mesh_id": ["D009369", "D008113", "D008099"],
                          "tree_numbers": [["C04"], list(liver_neo.tree_numbers), list(liver.tree_numbers)]})
    h = Hierarchy.from_vocab(vocab)
    assert not h.compatible_distractor("liver tumor", "tumor") and h.compatible_distractor("liver tumor", "liver")


def test_tagging_rules_and_reported_conflicts(normalizer):
    cur = load_curated()
    for table in (cur.tagging.organ_tasks, cur.tagging.type_tasks):
        assert set(table.values()) <= set(TASKS)
    assert set(cur.tagging.departments.values()) <= set(DEPARTMENTS)
    assert set(cur.tagging.semantic_types.values()) <= set(SEMANTIC_TYPES)
    tagger = Tagger(cur.tagging)
    mel = tagger.tag(normalizer.resolve("melanoma"), "Dermoscopy", Hints(), Hints())
    assert (mel.task, mel.department, mel.semantic_type) == ("Disease Diagnosis", "Dermatology", "lesion")
    liver_tumor = tagger.tag(normalizer.resolve("liver tumor"), "CT", Hints(), Hints())
    assert liver_tumor.department == "Gastroenterology and Hepatology"
    dr = normalizer.resolve("DR")  # C11 eye, C14 vessels, C19 endocrine: three departments
    fundus = tagger.tag(dr, "Fundus Photography", Hints(), Hints())
    assert fundus.department == "Ophthalmology" and fundus.origin["department"] == "mesh_tree (tie-break by modality)"
    ct = tagger.tag(dr, "CT", Hints(), Hints())
    assert ct.department is None and any("disagree" in i for i in ct.issues)
    pinned = tagger.tag(dr, "CT", Hints(department="Endocrinology"), Hints())
    assert pinned.department == "Endocrinology" and pinned.origin["department"] == "label_map"
    spleen = tagger.tag(normalizer.resolve("spleen"), "CT", Hints(), Hints())
    assert spleen.task == "Organ Recognition - Abdomen"


def test_lexical_tree_and_select():
    df = pd.DataFrame({
        "clinical_vqa_task": ["Disease Diagnosis", "Disease Diagnosis", "Organ Recognition - Abdomen"],
        "department": ["Pulmonary Medicine", "Dermatology", "Urology"],
        "perceptual_granularity": ["Image level", "Image level", "Mask level"],
        "modality": ["X-ray", "Dermoscopy", "CT"], "answer_label": ["pneumonia", "melanoma", "kidney"]})
    tree = lexical_tree(df)
    assert tree["task"]["Disease Diagnosis"] == {"Dermoscopy": {"melanoma": 1}, "X-ray": {"pneumonia": 1}}
    assert tree["granularity"]["Mask level"]["CT"] == {"kidney": 1}
    assert b"<details>" in tree_html(tree, "t")
    assert list(select(df, task=["Disease Diagnosis"], modality=["X-ray"])["answer_label"]) == ["pneumonia"]
    assert len(select(df, granularity=["Mask level", "Image level"])) == 3


@needs_shared
def test_all_shared_dataset_labels_resolve_or_are_accepted(shared_config):
    """Every label present in the real sample datasets resolves to MeSH, a reasoned no-MeSH concept, or is accepted."""
    from pipelines.ingest import ingest
    from pipelines.sources.registry import load_registry
    reg = load_registry(shared_config.registry)
    datasets = []
    for ds in reg.ids:
        src = reg.get(ds)
        samples = ingest(src, shared_config).samples.to_pandas()
        names = Counter()
        for labels, values in zip(samples["labels"], samples["label_values"]):
            names.update(list(labels) if labels is not None else [])
            names.update(src.label_map.name_of(v) for v in (values if values is not None else []) if v)
        kind = {"cls": "image", "mcls": "image", "det": "box", "seg": "mask"}[src.entry.task_type]
        datasets.append(DatasetLabels(ds, src.entry.modality, src.entry.task_type, src.label_map, str(src.label_map_path),
                                      {n: Counter({kind: c}) for n, c in names.items() if n}))
    t = build_vocab(datasets, load_mesh(), load_curated(), seed=1).to_pandas()
    assert len(t) >= 60
    assert t[t["status"] == "unresolved"].empty, t[t["status"] == "unresolved"][["dataset_id", "raw_label"]]
    assert (t["status"] == "mesh").mean() > 0.7
    resolved = t[~t["status"].isin(["accepted", "excluded"])]
    assert resolved["task"].notna().all() and resolved["department"].notna().all()
    # colour-named test segments and the RT body outline never reach an item (issue 14)
    assert set(t.loc[t["status"] == "excluded", "raw_label"]) == {"GREEN", "ORANGE", "PURPLE", "LIGHT_BLUE",
                                                                 "DARK_BLUE", "BODY"}


def test_labels_without_clinical_meaning_are_flagged():
    from pipelines.vocab.build import meaningless
    for name in ("ORANGE", "light blue segment", "Segment_3", "background", "other", "body", "label 2"):
        assert meaningless(name, name), name
    for name in ("liver", "Tumor Bed", "white blood cell", "thoracic spine", "orange peel sign"):
        assert meaningless(name, name) is None, name


def test_related_pairs_reports_overlaps_within_a_dataset():
    from pipelines.vocab.hierarchy import related_pairs
    vocab = pd.DataFrame({"dataset_id": ["a", "a", "a", "b"],
                          "canonical_label": ["tumor", "liver tumor", "liver", "tumor"],
                          "mesh_id": ["D009369", "D008113", "D008099", "D009369"],
                          "tree_numbers": [["C04"], ["C04.588.274.623"], ["A03.620"], ["C04"]]})
    assert related_pairs(vocab) == [("a", "liver tumor", "tumor", "descendant")]


def test_public_tree_counts_options_offered_not_keys():
    """Two test items whose key is 'liver' and which both offer 'spleen': the public tree counts each structure
    once per item offering it (liver 2, spleen 2, kidney 1), so it cannot tell the key from a distractor."""
    from pipelines.vocab.tree import offered_options
    items = pd.DataFrame({"clinical_vqa_task": ["Organ Recognition - Abdomen"] * 2, "department": ["Radiology"] * 2,
                          "perceptual_granularity": ["Mask level"] * 2, "modality": ["CT"] * 2,
                          "answer_label": ["liver", "liver"], "A": ["spleen", "liver"], "B": ["liver", "spleen"],
                          "C": ["kidney", None], "D": [None, None], "E": [None, None]})
    tree = lexical_tree(offered_options(items), label="option")
    assert tree["task"]["Organ Recognition - Abdomen"]["CT"] == {"kidney": 1, "liver": 2, "spleen": 2}
