"""The blind baseline drives selection (issue 14, item 4): units the text alone answers are dropped until
the cross-fitted model and the option-prior rule are within the margin of chance, deterministically."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipelines.validity.blind import blind_predictions, blind_report, prior_predictions
from pipelines.validity.debias import drop_text_predictable
from pipelines.select.splits import reletter
from pipelines.config import BenchmarkSettings

TASK = "Organ Recognition - Abdomen"
NAMES = ["liver", "spleen", "kidney", "pancreas"]


def _items(n: int, skew: float, seed: int = 0) -> pd.DataFrame:
    """Three-option items over four organs in a balanced design (each name the key as often as any other,
    each left out as often); with probability ``skew`` the key is 'liver' instead (a text prior)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        key = "liver" if rng.random() < skew else NAMES[i % 4]
        others = [x for x in NAMES if x != key]
        others.pop((i // 4) % 3)  # balanced design: every name is the key and a distractor equally often
        opts = [key] + others
        opts = [opts[j] for j in rng.permutation(3)]
        rows.append({"item_id": f"i{i:04d}", "unit_id": f"u{i:04d}", "group_id": f"g{i}", "split_group": f"g{i}",
                     "split": "test" if i % 4 else "val", "question": "Which organ is shown in the marked area?",
                     "A": opts[0], "B": opts[1], "C": opts[2], "D": None, "E": None, "n_options": 3,
                     "answer": "ABC"[opts.index(key)], "multi_answer": False, "granularity": "mask",
                     "clinical_vqa_task": TASK, "dataset_id": "d", "option_origins": [["dataset"] * 3][0]})
    return pd.DataFrame(rows)


def test_prior_rule_finds_an_over_represented_answer():
    leaky = blind_report(prior_predictions(_items(400, 0.8), 5), 0.05, 30)
    assert leaky["accuracy"] > 0.6 and TASK in leaky["exceeds"]
    fair = blind_report(prior_predictions(_items(400, 0.0), 5), 0.05, 30)
    assert fair["exceeds"] == []


def test_selection_drops_text_answerable_units_until_at_chance():
    items = _items(400, 0.7)
    b = BenchmarkSettings()
    before = blind_report(blind_predictions(items, b.text_only_folds, 0), b.text_only_margin, b.text_only_min_items)
    assert before["exceeds"]  # the crafted set is text-predictable: the mechanism has something to fail on
    out = drop_text_predictable(items, b, 0, reletter)
    assert out.dropped and out.rounds >= 1
    assert out.after["exceeds"] == []
    assert out.after["accuracy"] <= out.after["chance"] + b.text_only_margin
    kept = out.items
    assert not kept["unit_id"].isin(out.dropped).any() and len(kept) == len(items) - len(out.dropped)
    # the drops hit the prior: 'liver' is the key of a smaller share of what is kept
    liver_share = lambda df: (df.apply(lambda r: r[r["answer"]], axis=1) == "liver").mean()  # noqa: E731
    assert liver_share(kept) < liver_share(items)
    # letters re-balanced and option origins follow their options
    assert set(kept["answer"]) == {"A", "B", "C"}
    assert all(len(o) == 3 for o in kept["option_origins"])
    assert out.dropped_by_dataset == {"d": len(out.dropped)}


def test_fair_set_is_left_alone_and_rounds_zero_only_reports():
    b = BenchmarkSettings()
    fair = drop_text_predictable(_items(480, 0.0), b, 0, reletter)
    assert fair.dropped == [] and fair.rounds == 0
    off = drop_text_predictable(_items(400, 0.7), b.model_copy(update={"text_only_rounds": 0}), 0, reletter)
    assert off.dropped == [] and off.after["exceeds"]


def test_same_seed_same_drops_byte_identical():
    b = BenchmarkSettings()
    a = drop_text_predictable(_items(400, 0.7), b, 7, reletter)
    c = drop_text_predictable(_items(400, 0.7), b, 7, reletter)
    assert a.dropped == c.dropped
    assert a.items.to_json() == c.items.to_json()


def test_remembered_predictions_follow_the_content_not_the_frame():
    """Selection asks for the same readers' predictions several times; a remembered answer is given back only for
    rows equal on what the readers read, and any change to those (one key, one option, one split) is fitted
    afresh, with the figures a direct fit gives."""
    from pipelines.validity.blind import fold_rows, predictions
    items = _items(200, 0.5, seed=3)
    direct = blind_predictions(items, 3, 0, fold_rows(items, 3, "image_id"))
    first = predictions(items, 3, 0)
    pd.testing.assert_frame_equal(first.reset_index(drop=True), direct.reset_index(drop=True))
    again = predictions(items.copy().reset_index(drop=True), 3, 0)  # another frame, the same rows
    pd.testing.assert_frame_equal(again, first)
    again.loc[:, "hit"] = ~again["hit"]  # what a caller does to its copy is not remembered
    pd.testing.assert_frame_equal(predictions(items, 3, 0), first)
    for column, value in (("answer", "B" if items.loc[7, "answer"] != "B" else "A"), ("A", "spleen capsule"),
                          ("split", "val" if items.loc[7, "split"] == "test" else "test")):
        changed = items.copy()
        changed.loc[7, column] = value
        want = blind_predictions(changed, 3, 0, fold_rows(changed, 3, "image_id"))
        pd.testing.assert_frame_equal(predictions(changed, 3, 0).reset_index(drop=True),
                                      want.reset_index(drop=True))
    prior = prior_predictions(items, 3, fold_rows(items, 3, "image_id"))
    pd.testing.assert_frame_equal(predictions(items, 3, 0, kind="prior").reset_index(drop=True),
                                  prior.reset_index(drop=True))
    # a missing option is missing as None or NaN; a tag only the metadata reader reads changes only its answer
    nan = items.assign(D=np.nan, E=np.nan)
    pd.testing.assert_frame_equal(predictions(nan, 3, 0).reset_index(drop=True), direct.reset_index(drop=True))
    tagged = items.assign(department=["Gastroenterology" if i % 2 else "Urology" for i in range(len(items))])
    for kind in ("text", "metadata"):
        want = blind_predictions(tagged, 3, 0, fold_rows(tagged, 3, "image_id"), kind)
        pd.testing.assert_frame_equal(predictions(tagged, 3, 0, kind=kind).reset_index(drop=True),
                                      want.reset_index(drop=True))
