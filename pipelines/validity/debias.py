"""Selection acts on the blind baseline: units the text alone answers are dropped until it is near chance.

Two passes. First per dataset: the text reader and the option-prior rule (:mod:`pipelines.validity.blind`) are
fitted on one dataset's items and judged on both splits (every prediction is out of fold), so a dataset's own label
priors go away and one dataset's drops never depend on another dataset. Then over the whole benchmark, judged on
the test split, for what only shows across datasets. In each round, for every task above chance + its margin
(every task when the overall figure is), the units either reader answers correctly with high confidence are
dropped; when that is not enough, the most confident remaining hits of the task go too (the fewest that can bring
it down). A dropped unit is not refilled from the same answer: a text prior is usually an over-represented
answer, and refilling would rebuild it. Everything is seeded and ordered, so the same inputs drop the same units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from pipelines.config import BenchmarkSettings
from pipelines.validity.blind import blind_report, predictions


@dataclass
class Debiased:
    items: pd.DataFrame
    dropped: list[str] = field(default_factory=list)  # unit ids, in the order they were dropped
    rounds: int = 0
    before: dict = field(default_factory=dict)  # global blind report of the selection as first built
    after: dict = field(default_factory=dict)  # global blind report of what is kept
    dropped_by_dataset: dict[str, int] = field(default_factory=dict)  # units dropped per dataset
    global_dropped: list[str] = field(default_factory=list)  # of ``dropped``, those the cross-dataset pass dropped


def _needed(part: pd.DataFrame, margin: float) -> int:
    """How many hits must go for the part's accuracy to reach chance + margin (others unchanged)."""
    n, hits = len(part), int(part["hit"].sum())
    target = float((1 / part["n_options"]).mean()) + margin
    if n == 0 or hits / n <= target or target >= 1:
        return 0
    return max(0, math.ceil((hits - target * n) / (1 - target)))


def flag_units(model: pd.DataFrame, prior: pd.DataFrame, exceeds: list[str], b: BenchmarkSettings,
               splits: tuple[str, ...] = ("test",)) -> list[str]:
    """Units to drop this round: in each exceeding task, the confident hits of the model or the prior
    rule, topped up with the most confident other hits (every split, in proportion) when too few."""
    if not exceeds:
        return []
    hits = pd.concat([model, prior], ignore_index=True)
    hits = hits[hits["hit"]].sort_values(["confidence", "unit_id"], ascending=[False, True])
    hits = hits.drop_duplicates("unit_id")  # each unit once, at its highest confidence
    tasks = set(model["clinical_vqa_task"]) if "overall" in exceeds else set(exceeds)
    out: list[str] = []
    for task in sorted(tasks):
        pool = hits[hits["clinical_vqa_task"] == task]
        confident = pool[pool["confidence"] >= b.text_only_confidence]
        mine = model[model["clinical_vqa_task"] == task]
        margin = b.text_only_margin if "overall" in exceeds else b.text_only_task_margin
        need = max(_needed(p[p["split"].isin(splits) & (p["clinical_vqa_task"] == task)], margin)
                   for p in (model, prior))
        share = len(mine) / max(int(mine["split"].isin(splits).sum()), 1)  # other splits drop in proportion
        out.extend(pool["unit_id"].head(max(len(confident), math.ceil(need * share))).tolist())
    return sorted(set(out))


def blind_reports(items: pd.DataFrame, b: BenchmarkSettings, seed: int, splits: tuple[str, ...] = ("test",)
                  ) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Text-reader and prior-rule predictions and the judged report: the reader's figures, with ``exceeds``
    naming every task (or 'overall') where the reader or the prior rule is above chance + margin."""
    model = predictions(items, b.text_only_folds, seed, b.text_only_fold_by, "text", b.render_workers)
    prior = predictions(items, b.text_only_folds, seed, b.text_only_fold_by, "prior")
    args = (b.text_only_margin, b.text_only_min_items, b.text_only_task_margin, splits)
    report, rule = blind_report(model, *args), blind_report(prior, *args)
    exceeds = sorted(set(report["exceeds"]) | set(rule["exceeds"]), key=lambda t: (t != "overall", t))
    return model, prior, {**report, "exceeds": exceeds, "prior_accuracy": rule["accuracy"],
                          "prior_exceeds": rule["exceeds"]}


def _rounds(items: pd.DataFrame, b: BenchmarkSettings, seed: int, reletter, splits: tuple[str, ...]
            ) -> tuple[pd.DataFrame, list[str], int, dict]:
    """(kept items, dropped units, rounds, the blind report of the kept items on ``splits``)."""
    dropped: list[str] = []
    model, prior, report = blind_reports(items, b, seed, splits)
    rounds = 0
    while report["exceeds"] and rounds < b.text_only_rounds:
        flagged = flag_units(model, prior, report["exceeds"], b, splits)
        if not flagged:
            break
        rounds += 1
        dropped.extend(flagged)
        items = reletter(items[~items["unit_id"].isin(set(flagged))].reset_index(drop=True), seed)
        model, prior, report = blind_reports(items, b, seed, splits)
    return items, dropped, rounds, report


def drop_text_predictable(items: pd.DataFrame, b: BenchmarkSettings, seed: int, reletter) -> Debiased:
    """Drop units until the blind baseline is within its margins (or the rounds run out): per dataset on both
    splits, then across datasets on the test split. ``reletter`` re-places the correct letters of what a dataset
    keeps (the cross-dataset pass leaves letters alone)."""
    original = items
    before = blind_reports(items, b, seed)[2]
    kept, dropped, rounds = [], [], 0
    for _, part in items.groupby("dataset_id", sort=True):
        part, gone, n, _ = _rounds(part.reset_index(drop=True), b, seed, reletter, ("val", "test"))
        kept.append(part)
        dropped += gone
        rounds = max(rounds, n)
    items = pd.concat(kept, ignore_index=True) if kept else items
    # across datasets the letters stay where they are: re-placing them would change keys of datasets no rule hit
    items, gone, n, after = _rounds(items, b, seed, lambda df, _seed: df, ("test",))  # after: on what is kept
    result = Debiased(items, dropped + gone, max(rounds, n), before, after, global_dropped=gone)
    lost = original[original["unit_id"].isin(set(result.dropped))].drop_duplicates("unit_id")
    result.dropped_by_dataset = {str(k): int(v) for k, v in lost.groupby("dataset_id").size().items()}
    return result
