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


_PIDS: list = []  # the file each fold's process writes its id to (set by the test below)


def _fold_noting_its_process(i):
    import os

    import pipelines.validity.blind as blind
    with open(_PIDS[0], "a") as fh:
        fh.write(f"{os.getpid()}\n")
    return blind.__dict__["_fold_scores_unpatched"](i)


def test_folds_fitted_in_forked_processes_give_the_predictions_of_one_process(tmp_path, monkeypatch):
    """With workers, each fold is fitted in a fork of this process (the reader and rows inherited): the same fits,
    so the same predictions, hits and confidences, in the same order."""
    import os

    import pipelines.validity.blind as blind
    from pipelines.validity.blind import fold_rows
    items = _items(300, 0.5, seed=5)
    prepared = fold_rows(items, 5, "image_id")
    here = blind_predictions(items, 5, 0, prepared)
    monkeypatch.setitem(blind.__dict__, "_fold_scores_unpatched", blind._fold_scores)
    monkeypatch.setattr(blind, "_fold_scores", _fold_noting_its_process)
    _PIDS[:] = [tmp_path / "pids"]
    forked = blind_predictions(items, 5, 0, prepared, workers=2)
    pd.testing.assert_frame_equal(forked, here)
    pids = (tmp_path / "pids").read_text().split()
    assert len(pids) == 5 and str(os.getpid()) not in pids and len(set(pids)) <= 2  # five folds, two forks
    assert blind._FOLDS == ()  # nothing of the fit is kept alive after it


def test_option_rows_by_hand():
    """One row per offered option, in letter order: a count question's ranks by value (ties in letter order, its
    smallest and largest at the edges), a word question at the middle rank, empty and missing letters skipped."""
    from pipelines.validity.blind import _option_rows
    items = pd.DataFrame([
        {"item_id": "n", "question": "How many?", "answer": "B", "A": "3 ribs", "B": "1 rib", "C": "3 ribs",
         "D": "2 ribs", "E": None, "clinical_vqa_task": "Counting", "modality": "CT"},
        {"item_id": "w", "question": "Which organ?", "answer": "C", "A": "liver", "B": "", "C": "spleen",
         "D": "5 mm", "E": None, "clinical_vqa_task": TASK, "modality": "MR"}])
    rows = _option_rows(items)
    assert rows["item"].tolist() == ["n"] * 4 + ["w"] * 3
    assert rows["option"].tolist() == ["3 ribs", "1 rib", "3 ribs", "2 ribs", "liver", "spleen", "5 mm"]
    assert rows["pos"].tolist() == [0, 1, 2, 3, 0, 2, 3] and rows["k"].tolist() == [4] * 4 + [3] * 3
    assert rows["numeric"].tolist() == [True] * 4 + [False] * 3  # one word option makes an item non-numeric
    assert rows["rank"].tolist() == [2 / 3, 0.0, 1.0, 1 / 3, 0.5, 0.5, 0.5]
    assert rows["is_edge"].tolist() == [False, True, True, False, False, False, False]
    assert rows["correct"].tolist() == [False, True, False, False, False, True, False]
    assert rows["tags"].tolist() == (["modality=CT clinical_vqa_task=Counting"] * 4
                                     + [f"modality=MR clinical_vqa_task={TASK}"] * 3)
    assert rows["task"].tolist() == ["Counting"] * 4 + [TASK] * 3
