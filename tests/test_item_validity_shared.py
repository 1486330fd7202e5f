"""Item validity on the real ../shared registry, re-derived from the exported files alone (issue 14):
no scan or field on both sides of the split, no count of a partly annotated label, no fill wording
on an outline, and count options that do not give the key away."""

from __future__ import annotations

import io
from collections import Counter

import imagehash
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pipelines.config import PipelineConfig
from tests.conftest import exported_rows, needs_shared

pytestmark = [needs_shared, pytest.mark.slow]
FILL_WORDS = r"\b(?:shaded|shading|overlay|highlighted|filled|tinted)\b"


@pytest.fixture(scope="module")
def exported(shared_build) -> tuple[PipelineConfig, pd.DataFrame]:
    """The shared registry built end to end; every exported Parquet row with the test answer key joined."""
    return shared_build, exported_rows(shared_build.data_root / "benchmark")


def test_no_near_duplicate_images_across_splits(exported):
    """pHash of every exported image, decoded again: no val/test pair within near_duplicate_bits (the
    ct_sm crop of ct_full and BCCD's repeated fields were the real cases)."""
    cfg, rows = exported
    h = np.array([int(str(imagehash.phash(Image.open(io.BytesIO(r["bytes"])).convert("L"))), 16)
                  for r in rows["image"]], dtype=np.uint64)
    val, test = h[(rows["split"] == "val").to_numpy()], h[(rows["split"] == "test").to_numpy()]
    assert len(val) and len(test)
    dist = np.bitwise_count(val[:, None] ^ test[None, :])
    assert int((dist <= cfg.benchmark.near_duplicate_bits).sum()) == 0


def test_counting_only_for_exhaustive_labels(exported):
    _, rows = exported
    counting = rows[rows["clinical_vqa_task"] == "Counting"]
    assert not counting["question"].str.contains("red blood cell|platelet", case=False).any()
    opts = counting[list("ABCDE")].stack()
    assert not opts.str.contains("red blood cell|platelet", case=False).any()


def test_contour_items_never_speak_of_a_fill(exported):
    _, rows = exported
    contour = rows[rows["perceptual_granularity"] == "Contour level"]
    assert len(contour)
    assert not contour["question"].str.contains(FILL_WORDS, case=False, regex=True).any()


def test_val_tsv_tags_survive_a_default_pandas_read(exported):
    """VLMEvalKit reads the TSV with pandas' defaults: no tag may turn into NaN ('N/A', 'NA', '')."""
    cfg, _ = exported
    tsv = pd.read_csv(cfg.data_root / "benchmark" / "tsv" / "medbench_VAL.tsv", sep="\t")
    tags = ["question", "answer", "category", "clinical VQA task", "department", "perceptual granularity", "modality"]
    assert len(tsv) and not tsv[tags].isna().any().any(), tsv[tags].isna().sum().to_dict()


def test_no_excluded_or_meaningless_label_reaches_an_item(exported):
    _, rows = exported
    opts = rows[list("ABCDE")].stack().str.lower()
    assert not opts.str.fullmatch(r"(?:light |dark )?(?:green|orange|purple|blue) segment|body").any()


def test_every_counted_label_has_varied_keys(exported):
    """A count that is nearly always the same number is answerable from the text; counted labels vary."""
    cfg, rows = exported
    counting = rows[rows["clinical_vqa_task"] == "Counting"]
    keys = counting.apply(lambda r: r[r["key"]], axis=1) if len(counting) else pd.Series(dtype=object)
    per_label = Counter()
    for label, part in keys.groupby(keys.str.split(n=1).str[1].str.rstrip("s")):
        per_label[label] = part.str.split().str[0].nunique()
    assert all(n >= cfg.questions.min_count_keys for n in per_label.values()), per_label


def test_every_registration_yields_items_or_an_expected_outcome(exported):
    """Every registration yields items (in any config) or the summary names an expected outcome: images all below
    the readability gates (PneumoniaMNIST's 28 px), the same images as an earlier registration (the NRRD copy of
    the pyradiomics volumes), every label excluded (the RT body outline), or one label covering every image (the
    ISBI membranes). Nothing is an error."""
    cfg, rows = exported
    from pipelines.sources.registry import registry_of
    from pipelines.summary import summarize
    ids = registry_of(cfg).ids
    lines = summarize(cfg.data_root, ids).empty_datasets()
    assert not any("ERROR" in line for line in lines), lines
    expected = {line.split(":")[0].strip(): line for line in lines}
    grounded = exported_rows(cfg.data_root / "benchmark", "grounding/data")
    assert set(ids) == set(rows["dataset_id"]) | set(grounded["dataset_id"]) | set(expected), (sorted(ids), lines)
    assert "readability gates" in expected["pneumoniamnist_csv"]
    assert "same images as pyradiomics_mr_nifti" in expected["pyradiomics_mr_nrrd"]
    assert "excludes every label" in expected["dicompyler_rtstruct"]
    assert "one label covers most of every image" in expected["isbi2012_em"]


def _with_units(cfg, rows: pd.DataFrame) -> pd.DataFrame:
    """Exported rows with the unit and leakage component of each (from the benchmark table, by index)."""
    bench = pd.read_parquet(cfg.data_root / "tables" / "benchmark.parquet",
                            columns=["index", "item_id", "unit_id", "split_group", "granularity", "n_options",
                                     "option_origins", "answer_label"])
    rows = rows.drop(columns=[c for c in ("answer", "item_id", "n_options") if c in rows])
    return rows.rename(columns={"key": "answer"}).merge(bench, on="index")


def test_text_only_baseline_is_at_chance_on_test(exported):
    """The cross-fitted model and the option-prior rule, refitted here on the exported rows and keys, are
    within chance + margin on the test split overall and for every task with enough items."""
    cfg, rows = exported
    from pipelines.validity.blind import blind_predictions, blind_report, prior_predictions
    b = cfg.benchmark
    items = _with_units(cfg, rows)
    for pred in (blind_predictions(items, b.text_only_folds, cfg.seed), prior_predictions(items, b.text_only_folds)):
        report = blind_report(pred, b.text_only_margin, b.text_only_min_items, b.text_only_task_margin)
        assert report["items"] > 300
        assert report["accuracy"] <= report["chance"] + b.text_only_margin, report
        assert report["exceeds"] == [], report["by_task"]


def test_fallback_options_are_keys_elsewhere_and_never_a_second_answer(exported):
    """Fallback options carry their origin, belong to the item's modality in the curated vocabulary, are keys of
    items of another dataset with the same modality and task, and are never a synonym, ancestor or descendant of
    the key."""
    cfg, rows = exported
    from pipelines.vocab.fallback import load_fallback
    from pipelines.vocab.frame import vocab_frame
    from pipelines.vocab.hierarchy import Hierarchy
    items = _with_units(cfg, rows)
    assert (items["option_origins"].map(len) == items["n_options"]).all()
    keys = {(r["dataset_id"], r["modality"], r["clinical_vqa_task"], r[r["answer"]]) for r in items.to_dict("records")}
    fb = items[items["option_origins"].map(lambda o: "fallback" in list(o))]
    h = Hierarchy.from_vocab(vocab_frame(pd.read_parquet(cfg.data_root / "tables" / "label_vocab.parquet")))
    where = load_fallback().modalities()
    for r in fb.to_dict("records"):
        key = r[r["answer"]]
        for letter, origin in zip("ABCDE", r["option_origins"]):
            if origin == "fallback":
                assert r["modality"] in where[r[letter]]
                assert h.compatible_distractor(key, r[letter]), (key, r[letter])
                assert any(ds != r["dataset_id"] and (m, t, k) == (r["modality"], r["clinical_vqa_task"], r[letter])
                           for ds, m, t, k in keys), (r["dataset_id"], r[letter])
