"""Validity audit of the selected benchmark: leakage, option validity, letter balance, baselines."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import pandas as pd

from pipelines.questions.audit import (
    LETTERS,
    Outcome,
    item_checks,
    letter_distribution,
    options_of,
)
from pipelines.vocab.hierarchy import Hierarchy


def split_leaks(df: pd.DataFrame) -> dict[str, int]:
    """Groups, images and twin units found in more than one split (all must be 0)."""
    return {col: int((df.groupby(col)["split"].nunique() > 1).sum()) for col in ("group_id", "image_id", "unit_id")}


def related_options(df: pd.DataFrame, vocab: pd.DataFrame) -> list[str]:
    """Items with an option that is a synonym, ancestor or descendant of a correct answer."""
    h = Hierarchy.from_vocab(vocab)
    bad = []
    for row in df[df["clinical_vqa_task"] != "Counting"].to_dict("records"):
        answers = {row[a] for a in row["answer"].split(",")}
        others = [o for o in options_of(row) if o not in answers]
        if any(not h.compatible_distractor(a, o) for a in answers for o in others):
            bad.append(row["item_id"])
    return bad


def cross_modality_options(df: pd.DataFrame, vocab: pd.DataFrame) -> list[str]:
    """Items offering a label never seen in the item's modality."""
    seen = defaultdict(set)
    for lab, mod in zip(vocab["canonical_label"], vocab["modality"]):
        seen[lab].add(mod)
    return [row["item_id"] for row in df[df["clinical_vqa_task"] != "Counting"].to_dict("records")
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


def text_only_baseline(df: pd.DataFrame, confidence: float) -> tuple[float, list[str]]:
    """Answer from text alone: pick the option most often correct among the *other* items of the same
    (task, granularity, modality) — a frequency prior a model could learn without the image.
    Returns accuracy and the items it answers correctly with confidence >= ``confidence``."""
    single = df[~df["multi_answer"] & (df["clinical_vqa_task"] != "Counting")].drop_duplicates("unit_id")
    if single.empty:
        return 0.0, []
    answer_text = single.apply(lambda r: r[r["answer"]], axis=1)
    key = single["clinical_vqa_task"] + "|" + single["granularity"].str.replace("contour", "mask") + "|" + single["modality"]
    freq = {k: Counter(answer_text[key == k]) for k in key.unique()}
    hits, flagged = 0, []
    for (idx, row), k, truth in zip(single.iterrows(), key, answer_text):
        counts = freq[k].copy()
        counts[truth] -= 1  # leave this item out
        scores = np.array([counts.get(o, 0) + 1.0 for o in options_of(row)])  # add-one smoothing
        probs = scores / scores.sum()
        pick = options_of(row)[int(np.argmax(probs))]
        if pick == truth:
            hits += 1
            if probs.max() >= confidence:
                flagged.append(row["unit_id"])
    return hits / len(single), flagged


def audit(df: pd.DataFrame, vocab: pd.DataFrame, seed: int, confidence: float) -> tuple[list[Outcome], dict]:
    leaks = split_leaks(df)
    related = related_options(df, vocab)
    cross = cross_modality_options(df, vocab)
    item = {o.name: o for o in item_checks(df)}
    base = chance(df, seed)
    acc, flagged = text_only_baseline(df, confidence)
    figures = {**base, "text_only_accuracy": acc, "text_only_flagged_units": len(flagged),
               "letter_distribution": letter_distribution(df)}
    outcomes = [
        Outcome("split_disjoint", not any(leaks.values()), False, dict(leaks)),
        Outcome("no_related_option", not related, False, {"items": len(related), "examples": ", ".join(related[:10]) or "-"}),
        Outcome("no_cross_modality_option", not cross, False, {"items": len(cross), "examples": ", ".join(cross[:10]) or "-"}),
        item["letter_balance"],
        Outcome("baselines", True, True, {"analytic_chance": round(base["analytic_chance"], 4),
                                          "random_guess": round(base["random_guess"], 4),
                                          "text_only_accuracy": round(acc, 4),
                                          "text_only_flagged_units": len(flagged)}),
    ]
    return outcomes, {**figures, "text_only_flagged": flagged}
