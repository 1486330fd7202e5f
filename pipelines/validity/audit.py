"""Validity audit of the selected benchmark: leakage, option validity, letter balance, baselines."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd

from pipelines.candidates.audit import (
    LETTERS,
    Outcome,
    _md,
    item_checks,
    letter_distribution,
    options_of,
)
from pipelines.config import BenchmarkSettings
from pipelines.validity.blind import blind_report, predictions
from pipelines.validity.debias import blind_reports
from pipelines.vocab.fallback import load_fallback
from pipelines.vocab.hierarchy import Hierarchy


def split_leaks(df: pd.DataFrame) -> dict[str, int]:
    """Groups, images and twin units found in more than one split (all must be 0)."""
    return {col: int((df.groupby(col)["split"].nunique() > 1).sum()) for col in ("group_id", "split_group", "image_id", "unit_id") if col in df}


def label_items(df: pd.DataFrame) -> pd.DataFrame:
    """Items whose options are vocabulary labels (recognition); counts, colours, directions and bins are not."""
    if "generator" in df:
        return df[df["generator"].fillna("recognition") == "recognition"]
    return df[df["clinical_vqa_task"] != "Counting"]


def related_options(df: pd.DataFrame, vocab: pd.DataFrame) -> list[str]:
    """Items with an option that is a synonym, ancestor or descendant of a correct answer."""
    h = Hierarchy.from_vocab(vocab)
    bad = []
    for row in label_items(df)[["item_id", "answer", *LETTERS]].to_dict("records"):  # only the columns read
        answers = {row[a] for a in row["answer"].split(",")}
        others = [o for o in options_of(row) if o not in answers]
        if any(not h.compatible_distractor(a, o) for a in answers for o in others):
            bad.append(row["item_id"])
    return bad


def cross_modality_options(df: pd.DataFrame, vocab: pd.DataFrame) -> list[str]:
    """Items offering a label never seen in the item's modality (a curated fallback option counts as seen
    in the modalities it is listed for)."""
    seen = defaultdict(set)
    for lab, mods in load_fallback().modalities().items():
        seen[lab] |= mods
    for lab, mod in zip(vocab["canonical_label"], vocab["modality"]):
        seen[lab].add(mod)
    return [row["item_id"] for row in label_items(df)[["item_id", "modality", *LETTERS]].to_dict("records")
            if any(row["modality"] not in seen.get(o, set()) for o in options_of(row))]


def chance(df: pd.DataFrame, seed: int) -> dict[str, float]:
    """Analytic chance (mean of 1/k over single-answer items) and one seeded uniform random guess."""
    single = df[~df["multi_answer"]]
    if single.empty:
        return {"analytic_chance": 0.0, "random_guess": 0.0}
    k = single["n_options"].to_numpy()
    rng = np.random.default_rng(seed)
    guesses = [LETTERS[i] for i in (rng.random(len(k)) * k).astype(int)]
    return {"analytic_chance": float(np.mean(1 / k)),
            "random_guess": float(np.mean([g == a for g, a in zip(guesses, single["answer"])]))}


def audit(df: pd.DataFrame, vocab: pd.DataFrame, seed: int, b: BenchmarkSettings) -> tuple[list[Outcome], dict]:
    leaks = split_leaks(df)
    related = related_options(df, vocab)
    cross = cross_modality_options(df, vocab)
    item = {o.name: o for o in item_checks(df)}
    base = chance(df, seed)
    model, prior, blind = blind_reports(df, b, seed)  # the model's figures; exceeds: model or prior rule
    others = {kind: blind_report(predictions(df, b.text_only_folds, seed, b.text_only_fold_by, kind, b.render_workers),
                                 b.text_only_margin, b.text_only_min_items, b.text_only_task_margin)
              for kind in ("options", "metadata")}
    pred = pd.concat([model, prior], ignore_index=True)
    flagged = sorted(set(pred.loc[pred["hit"] & (pred["confidence"] >= b.text_only_confidence), "unit_id"]))
    figures = {**base, "text_only_accuracy": blind["accuracy"], "text_only_chance": blind["chance"],
               "text_only_prior_accuracy": blind.get("prior_accuracy", 0.0),
               "text_only_test_items": blind["items"], "text_only_flagged_units": len(flagged),
               "text_only_exceeds": ", ".join(blind["exceeds"]) or "-",
               **{f"{kind}_only_accuracy": r["accuracy"] for kind, r in others.items()},
               **{f"{kind}_only_exceeds": ", ".join(r["exceeds"]) or "-" for kind, r in others.items()},
               "letter_distribution": letter_distribution(df)}
    by_task = pd.DataFrame([{"task": t, **v} for t, v in sorted(blind["by_task"].items())])
    by_pair = pd.DataFrame([{"task / dataset": t, **v} for t, v in sorted(blind["by_task_dataset"].items())])
    outcomes = [
        Outcome("split_disjoint", not any(leaks.values()), False, dict(leaks)),
        Outcome("no_related_option", not related, False, {"items": len(related), "examples": ", ".join(related[:10]) or "-"}),
        Outcome("no_cross_modality_option", not cross, False, {"items": len(cross), "examples": ", ".join(cross[:10]) or "-"}),
        item["letter_balance"],
        Outcome("baselines", True, True, {"analytic_chance": round(base["analytic_chance"], 4),
                                          "random_guess": round(base["random_guess"], 4)}),
        Outcome("text_only_baseline", not blind["exceeds"], False,
                {"test_accuracy": round(blind["accuracy"], 4), "test_chance": round(blind["chance"], 4),
                 "prior_rule_accuracy": round(blind.get("prior_accuracy", 0.0), 4),
                 "margin": b.text_only_margin, "exceeds": ", ".join(blind["exceeds"]) or "-",
                 "flagged_units": len(flagged), "by_task": _md(by_task), "by_task_dataset": _md(by_pair),
                 **{f"{kind}_only_accuracy": round(r["accuracy"], 4) for kind, r in others.items()}}),
    ]
    return outcomes, {**figures, "text_only_flagged": flagged, "text_only_by_task": blind["by_task"],
                      "text_only_by_task_dataset": blind["by_task_dataset"],
                      **{f"{kind}_only_by_task": r["by_task"] for kind, r in others.items()}}
