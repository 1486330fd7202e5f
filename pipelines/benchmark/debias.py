"""Selection acts on the blind baseline: units the text alone answers are dropped until it is at chance.

The blind pass runs on the selected items only (a few thousand rows, not every candidate), so its cost
follows the benchmark. Each round fits the cross-fitted text-only model and the option-prior rule
(:mod:`pipelines.benchmark.blind`) and, for every task whose test accuracy is above chance + margin
(every task when the overall figure is), drops the units either answers correctly with high
confidence; when that is not enough to reach the margin, the most confident remaining hits of the task
go too (the fewest that can bring it down). A dropped unit is not refilled from the same answer: a
text prior is usually an over-represented answer (30 bladder units against 12 prostate ones), and
refilling would rebuild it. Rounds stop when nothing exceeds, or after ``text_only_rounds``.
Everything is seeded and ordered, so the same inputs drop the same units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from pipelines.benchmark.blind import blind_predictions, blind_report, fold_rows, prior_predictions
from pipelines.config import BenchmarkSettings


@dataclass
class Debiased:
    items: pd.DataFrame
    dropped: list[str] = field(default_factory=list)  # unit ids, in the order they were dropped
    rounds: int = 0
    before: dict = field(default_factory=dict)  # blind report of the selection as first built
    after: dict = field(default_factory=dict)  # blind report of what is kept
    before_items: pd.DataFrame | None = None
    dropped_by_dataset: dict[str, int] = field(default_factory=dict)  # units dropped per dataset


def _needed(part: pd.DataFrame, margin: float) -> int:
    """How many test hits must go for the part's accuracy to reach chance + margin (others unchanged)."""
    n, hits = len(part), int(part["hit"].sum())
    target = float((1 / part["n_options"]).mean()) + margin
    if n == 0 or hits / n <= target or target >= 1:
        return 0
    return max(0, math.ceil((hits - target * n) / (1 - target)))


def flag_units(model: pd.DataFrame, prior: pd.DataFrame, exceeds: list[str], b: BenchmarkSettings) -> list[str]:
    """Units to drop this round: in each exceeding task, the confident hits of the model or the prior
    rule, topped up with the most confident other hits (both splits, in proportion) when too few."""
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
        need = max(_needed(p[(p["split"] == "test") & (p["clinical_vqa_task"] == task)], b.text_only_margin)
                   for p in (model, prior))
        share = len(mine) / max(int((mine["split"] == "test").sum()), 1)  # val drops in proportion
        out.extend(pool["unit_id"].head(max(len(confident), math.ceil(need * share))).tolist())
    return sorted(set(out))


def blind_reports(items: pd.DataFrame, b: BenchmarkSettings, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Model and prior-rule predictions and the judged report: the model's figures, with ``exceeds``
    naming every task (or 'overall') where the model or the prior rule is above chance + margin."""
    prepared = fold_rows(items, b.text_only_folds)  # option rows and folds, shared by both predictors
    model = blind_predictions(items, b.text_only_folds, seed, prepared)
    prior = prior_predictions(items, b.text_only_folds, prepared)
    report = blind_report(model, b.text_only_margin, b.text_only_min_items)
    rule = blind_report(prior, b.text_only_margin, b.text_only_min_items)
    exceeds = sorted(set(report["exceeds"]) | set(rule["exceeds"]), key=lambda t: (t != "overall", t))
    return model, prior, {**report, "exceeds": exceeds, "prior_accuracy": rule["accuracy"],
                          "prior_exceeds": rule["exceeds"]}


def drop_text_predictable(items: pd.DataFrame, b: BenchmarkSettings, seed: int, reletter) -> Debiased:
    """Drop units until the blind baseline is within the margin (or the rounds run out); ``reletter``
    re-places the correct letters of what is kept so each split stays balanced."""
    model, prior, report = blind_reports(items, b, seed)
    result = Debiased(items, before=report, after=report, before_items=items)
    while report["exceeds"] and result.rounds < b.text_only_rounds:
        flagged = flag_units(model, prior, report["exceeds"], b)
        if not flagged:
            break
        result.rounds += 1
        result.dropped.extend(flagged)
        items = reletter(items[~items["unit_id"].isin(set(flagged))].reset_index(drop=True), seed)
        model, prior, report = blind_reports(items, b, seed)
    result.items, result.after = items, report
    gone = result.before_items[result.before_items["unit_id"].isin(set(result.dropped))].drop_duplicates("unit_id")
    result.dropped_by_dataset = {str(k): int(v) for k, v in gone.groupby("dataset_id").size().items()}
    return result
