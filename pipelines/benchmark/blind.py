"""A blind (text-only) baseline that can fail: cross-fitted, never scored on what it was fitted on.

Each option of a single-answer question becomes one row (question text, option text, the option's
letter position, and for numeric options its rank among the item's numbers); a logistic regression
scores rows and the item's answer is its highest-scoring option. Items are split into folds by
leakage component (``split_group``), so a fold is never scored by a model that saw the same scan,
and every item gets an out-of-fold prediction. If the text alone beats chance by a margin, the
benchmark has a prior to exploit (skewed answers, tell-tale option sets) and the check fails.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix, hstack
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold

LETTERS = "ABCDE"


def _option_rows(items: pd.DataFrame) -> pd.DataFrame:
    """One row per (item, option) with its text and position features, and whether it is correct."""
    rows = []
    for item in items[["item_id", "question", "clinical_vqa_task", "answer", *LETTERS]].to_dict("records"):
        opts = [(i, item[c]) for i, c in enumerate(LETTERS) if isinstance(item[c], str) and item[c]]
        nums = [_number(o) for _, o in opts]
        numeric = all(n is not None for n in nums)
        order = np.argsort(np.argsort(nums)) if numeric else np.zeros(len(opts), int)
        k = len(opts)
        for (i, text), rank in zip(opts, order):
            rows.append({"item": item["item_id"], "question": item["question"], "option": text,
                         "task": item["clinical_vqa_task"], "pos": i, "k": k, "numeric": numeric,
                         "rank": rank / max(k - 1, 1) if numeric else 0.5, "is_edge": numeric and rank in (0, k - 1),
                         "correct": LETTERS[i] == item["answer"]})
    return pd.DataFrame(rows)


def _number(text: str) -> float | None:
    head = text.split()[0] if text.split() else ""
    try:
        return float(head)
    except ValueError:
        return None


@lru_cache(maxsize=1 << 17)
def _terms(text: str) -> tuple[str, ...]:
    """The words and word pairs of one text, as TfidfVectorizer(ngram_range=(1, 2)) analyses it. Cached: the
    same question and option texts recur in every fold and every debiasing round, and analysing them again
    was most of the baseline's cost; the features are unchanged."""
    return tuple(_ANALYSE(text))


_ANALYSE = TfidfVectorizer(ngram_range=(1, 2)).build_analyzer()


def _vectorizer() -> TfidfVectorizer:
    return TfidfVectorizer(analyzer=_terms, min_df=1)


def _features(rows: pd.DataFrame, vec_q: TfidfVectorizer, vec_o: TfidfVectorizer, fit: bool):
    """Option words, question-and-option word pairs (by task), position and numeric-rank features."""
    joint = rows["task"] + " || " + rows["option"]
    q = vec_q.fit_transform(rows["question"] + " || " + rows["option"]) if fit else vec_q.transform(rows["question"] + " || " + rows["option"])
    o = vec_o.fit_transform(joint) if fit else vec_o.transform(joint)
    pos = np.zeros((len(rows), len(LETTERS) + 4))
    pos[np.arange(len(rows)), rows["pos"].to_numpy()] = 1
    pos[:, len(LETTERS)] = rows["rank"].to_numpy()
    pos[:, len(LETTERS) + 1] = rows["is_edge"].to_numpy(float)
    pos[:, len(LETTERS) + 2] = rows["numeric"].to_numpy(float)
    pos[:, len(LETTERS) + 3] = 1 / rows["k"].to_numpy()
    return hstack([q, o, csr_matrix(pos)]).tocsr()


COLUMNS = ["item_id", "unit_id", "split", "clinical_vqa_task", "n_options", "hit", "confidence"]


def fold_rows(df: pd.DataFrame, folds: int):
    """The single-answer units, their option rows, and (train rows, held-out rows) per fold by leakage
    component (none when fewer than two components)."""
    items = df[~df["multi_answer"]].sort_values(["unit_id", "granularity"]).drop_duplicates("unit_id")
    groups = items["split_group"] if "split_group" in items and items["split_group"].notna().all() else items["group_id"]
    n_folds = min(folds, groups.nunique())
    if n_folds < 2:
        return items, []
    rows = _option_rows(items)
    out = []
    for train_ids, test_ids in GroupKFold(n_splits=n_folds).split(items, groups=groups):
        train = rows[rows["item"].isin(set(items["item_id"].iloc[train_ids]))]
        test = rows[rows["item"].isin(set(items["item_id"].iloc[test_ids]))]
        if train["correct"].nunique() >= 2 and not test.empty:
            out.append((train, test))
    return items, out


def _predictions(items: pd.DataFrame, scored: list[pd.DataFrame]) -> pd.DataFrame:
    """Per item: hit (its best-scored option is correct; the first on ties) and confidence (that option's
    share of the item's scores). Each item is held out in exactly one fold."""
    if not scored:
        return pd.DataFrame(columns=COLUMNS)
    s = pd.concat(scored, ignore_index=True)
    best = s.loc[s.groupby("item", sort=False)["score"].idxmax()].set_index("item")
    total = s.groupby("item", sort=False)["score"].sum()
    out = items[items["item_id"].isin(best.index)][COLUMNS[:5]].copy()
    out["hit"] = best.loc[out["item_id"], "correct"].astype(bool).to_numpy()
    share = (best["score"] / total.reindex(best.index)).where(total.reindex(best.index) > 0, 0.0)
    out["confidence"] = share.loc[out["item_id"]].astype(float).to_numpy()
    return out[COLUMNS]


def prior_predictions(df: pd.DataFrame, folds: int, prepared: tuple | None = None) -> pd.DataFrame:
    """The option-prior rule, cross-fitted like the model: score each option by how often that option
    text (within its task) was the key when offered in the other folds (add-one smoothed), and answer
    the best. It catches an answer that is over-represented among the options it appears with. ``prepared``
    is ``fold_rows(df, folds)`` when the caller already has it."""
    items, parts = prepared or fold_rows(df, folds)
    scored = []
    for train, test in parts:
        seen = train.groupby(["task", "option"])["correct"].agg(["sum", "count"])
        rate = (seen["sum"] + 1) / (seen["count"] + 2)
        key = pd.MultiIndex.from_arrays([test["task"], test["option"]])
        scored.append(test.assign(score=rate.reindex(key).fillna(0.5).to_numpy()))
    return _predictions(items, scored)


def blind_predictions(df: pd.DataFrame, folds: int, seed: int, prepared: tuple | None = None) -> pd.DataFrame:
    """Out-of-fold text-only prediction per single-answer unit: item_id, unit_id, split, task, k,
    hit, confidence (the chosen option's share of the item's scores)."""
    items, parts = prepared or fold_rows(df, folds)
    scored = []
    for train, test in parts:
        vq, vo = _vectorizer(), _vectorizer()
        model = LogisticRegression(C=1.0, max_iter=2000, random_state=seed)
        model.fit(_features(train, vq, vo, True), train["correct"])
        scored.append(test.assign(score=model.predict_proba(_features(test, vq, vo, False))[:, 1]))
    return _predictions(items, scored)


def blind_report(pred: pd.DataFrame, margin: float, min_items: int) -> dict:
    """Accuracy vs chance on the test split, overall and per task with at least ``min_items`` items;
    ``exceeds`` lists where accuracy is above chance + ``margin``."""
    test = pred[pred["split"] == "test"]
    if test.empty:
        return {"items": 0, "accuracy": 0.0, "chance": 0.0, "by_task": {}, "exceeds": []}
    by_task, exceeds = {}, []
    acc, chance = float(test["hit"].mean()), float((1 / test["n_options"]).mean())
    if acc > chance + margin:
        exceeds.append("overall")
    for task, part in test.groupby("clinical_vqa_task"):
        a, c = float(part["hit"].mean()), float((1 / part["n_options"]).mean())
        by_task[task] = {"items": len(part), "accuracy": round(a, 4), "chance": round(c, 4)}
        if len(part) >= min_items and a > c + margin:
            exceeds.append(task)
    return {"items": len(test), "accuracy": acc, "chance": chance, "by_task": by_task, "exceeds": exceeds}
