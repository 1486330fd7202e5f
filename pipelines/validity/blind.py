"""Blind baselines that can fail: cross-fitted, never scored on what they were fitted on.

Each option of a single-answer question becomes one row; a logistic regression scores the rows and an item's
answer is its highest-scoring option. Three blind readers are fitted, each from what a model without the image
could know:

* ``text``: the question and option words, the option's letter position and, for numeric options, its rank;
* ``options``: the options alone (no question);
* ``metadata``: each option crossed with the item's public tags (dataset, modality, department, task): the label
  prior of a dataset or a body region.

Folds group items only by image (twins, copies and every question about one plane stay together), never by
dataset or template, so a prior that holds within a dataset or a template is learned from its other items, as
any model tuned on the val split or trained on medical text would learn it. A text-only reader sees no pixels,
so images of one patient on both sides of a fold leak nothing it could use. If a reader beats chance by a margin,
the benchmark has a prior to exploit and the check fails.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from functools import lru_cache

import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix, hstack
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold

from pipelines.processes import forked_map
from pipelines.records import LETTERS
from pipelines.validity.folded_tfidf import FoldedTexts

READERS = ("text", "options", "metadata")
META = ("dataset_id", "modality", "department", "clinical_vqa_task")


ROW_COLUMNS = ["item", "question", "option", "task", "tags", "pos", "k", "numeric", "rank", "is_edge", "correct"]


def _option_rows(items: pd.DataFrame) -> pd.DataFrame:
    """One row per (item, option) with its text, tags and position features, and whether it is correct: items in
    order, each item's options in letter order. Column-wise: thousands of items, on every debiasing round."""
    cells = items[list(LETTERS)].to_numpy(object)
    present = np.array([isinstance(v, str) and v != "" for v in cells.ravel().tolist()], bool).reshape(cells.shape)
    at, pos = np.nonzero(present)  # row-major: item by item, each item's letters in order
    if not len(at):
        return pd.DataFrame(columns=ROW_COLUMNS)
    option = cells[at, pos].tolist()
    parsed = [_number(o) for o in option]
    starts = np.flatnonzero(np.r_[True, at[1:] != at[:-1]])  # each item's first option row
    counts = np.diff(np.r_[starts, len(at)])
    numeric = np.repeat(np.logical_and.reduceat(np.array([v is not None for v in parsed]), starts), counts)
    value = np.array([np.nan if v is None else v for v in parsed], float)
    rank = np.empty(len(at), np.int64)  # each option's place by value within its item, ties in letter order
    rank[np.lexsort((value, at))] = np.arange(len(at)) - np.repeat(starts, counts)
    k = counts.repeat(counts)
    meta = [c for c in META if c in items]
    tags = [" ".join(t) for t in zip(*([f"{c}={v}" for v in items[c].tolist()] for c in meta))] if meta \
        else [""] * len(items)
    per_item = {"item": items["item_id"].tolist(), "question": items["question"].tolist(), "tags": tags,
                "task": items["clinical_vqa_task"].tolist() if "clinical_vqa_task" in items else [""] * len(items),
                "answer": items["answer"].tolist()}
    spread = {c: np.array(v, object)[at] for c, v in per_item.items()}
    return pd.DataFrame({
        "item": spread["item"], "question": spread["question"], "option": option, "task": spread["task"],
        "tags": spread["tags"], "pos": pos, "k": k, "numeric": numeric,
        "rank": np.where(numeric, rank / np.maximum(k - 1, 1), 0.5),
        "is_edge": numeric & ((rank == 0) | (rank == k - 1)),
        "correct": (np.array(list(LETTERS), object)[pos] == spread["answer"]).astype(bool)})


def _number(text: str) -> float | None:
    head = text.split()[0] if text.split() else ""
    try:
        return float(head)
    except ValueError:
        return None


@lru_cache(maxsize=1 << 17)
def _terms(text: str) -> tuple[str, ...]:
    """The words and word pairs of one text, as TfidfVectorizer(ngram_range=(1, 2)) analyses it. Cached: the
    same question and option texts recur in every fold and every debiasing round."""
    return tuple(_ANALYSE(text))


_ANALYSE = TfidfVectorizer(ngram_range=(1, 2)).build_analyzer()


def _crossed(value: str) -> tuple[str, ...]:
    """'tags || option' -> one token per tag crossed with the whole option text (a label prior per tag value)."""
    tags, option = value.split(" || ", 1)
    return tuple(f"{t}|{option.lower()}" for t in tags.split(" ") if t)


def _positions(rows: pd.DataFrame, with_letters: bool = True) -> csr_matrix:
    pos = np.zeros((len(rows), len(LETTERS) + 4))
    if with_letters:
        pos[np.arange(len(rows)), rows["pos"].to_numpy()] = 1
    pos[:, len(LETTERS)] = rows["rank"].to_numpy()
    pos[:, len(LETTERS) + 1] = rows["is_edge"].to_numpy(float)
    pos[:, len(LETTERS) + 2] = rows["numeric"].to_numpy(float)
    pos[:, len(LETTERS) + 3] = 1 / rows["k"].to_numpy()
    return csr_matrix(pos)


class Reader:
    """One blind reader's features: TF-IDF fitted on the training rows of a fold, applied to its held-out rows
    (each text analysed once over all the folds, :class:`FoldedTexts`)."""

    def __init__(self, kind: str, rows: pd.DataFrame):
        if kind not in READERS:
            raise ValueError(f"unknown blind reader {kind!r}; known: {READERS}")
        self.kind = kind
        analyzer = _crossed if kind == "metadata" else _terms
        self.index = rows.index
        self.texts = [FoldedTexts(t.tolist(), analyzer) for t in self._texts(rows)]

    def _texts(self, rows: pd.DataFrame) -> list[pd.Series]:
        if self.kind == "text":  # question-and-option words, and option words by task
            return [rows["question"] + " || " + rows["option"], rows["task"] + " || " + rows["option"]]
        if self.kind == "options":
            return [rows["option"]]
        return [rows["tags"] + " || " + rows["option"]]

    def features(self, train: pd.DataFrame, test: pd.DataFrame):
        """(training features, held-out features) of one fold's option rows."""
        at_train, at_test = self.index.get_indexer(train.index), self.index.get_indexer(test.index)
        mats = [t.split(at_train, at_test) for t in self.texts]
        letters = self.kind != "metadata"
        return (hstack([*(m[0] for m in mats), _positions(train, letters)]).tocsr(),
                hstack([*(m[1] for m in mats), _positions(test, letters)]).tocsr())


COLUMNS = ["item_id", "unit_id", "split", "dataset_id", "clinical_vqa_task", "n_options", "hit", "confidence"]


def fold_rows(df: pd.DataFrame, folds: int, by: str = "image_id"):
    """The single-answer units, their option rows, and (train rows, held-out rows) per fold, items grouped by
    ``by`` (none when fewer than two groups)."""
    items = df[~df["multi_answer"].astype(bool)].sort_values(["unit_id", "granularity"]).drop_duplicates("unit_id")
    groups = items[by] if by in items and items[by].notna().all() else items["unit_id"]
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
    cols = [c for c in COLUMNS[:6] if c in items]
    out = items[items["item_id"].isin(best.index)][cols].copy()
    out["hit"] = best.loc[out["item_id"], "correct"].astype(bool).to_numpy()
    share = (best["score"] / total.reindex(best.index)).where(total.reindex(best.index) > 0, 0.0)
    out["confidence"] = share.loc[out["item_id"]].astype(float).to_numpy()
    return out.reindex(columns=COLUMNS)


def prior_predictions(df: pd.DataFrame, folds: int, prepared: tuple | None = None) -> pd.DataFrame:
    """The option-prior rule, cross-fitted like the model: score each option by how often that option
    text (within its task) was the key when offered in the other folds (add-one smoothed), and answer
    the best. It catches an answer that is over-represented among the options it appears with."""
    items, parts = prepared or fold_rows(df, folds)
    scored = []
    for train, test in parts:
        seen = train.groupby(["task", "option"])["correct"].agg(["sum", "count"])
        rate = (seen["sum"] + 1) / (seen["count"] + 2)
        key = pd.MultiIndex.from_arrays([test["task"], test["option"]])
        scored.append(test.assign(score=rate.reindex(key).fillna(0.5).to_numpy()))
    return _predictions(items, scored)


def blind_predictions(df: pd.DataFrame, folds: int, seed: int, prepared: tuple | None = None,
                      kind: str = "text", workers: int = 1) -> pd.DataFrame:
    """Out-of-fold prediction of one blind reader per single-answer unit: item_id, unit_id, split, dataset,
    task, k, hit, confidence (the chosen option's share of the item's scores). ``workers`` > 1: the folds are
    fitted side by side in forks of this process (the same fits, so the same predictions)."""
    global _FOLDS
    items, parts = prepared or fold_rows(df, folds)
    reader = Reader(kind, pd.concat(parts[0]).sort_index()) if parts else None  # a fold's two sides: every row
    _FOLDS = (reader, parts, seed)
    try:
        scores = forked_map(_fold_scores, len(parts), workers)
    finally:
        _FOLDS = ()
    return _predictions(items, [test.assign(score=s) for (_, test), s in zip(parts, scores)])


_FOLDS: tuple = ()  # (reader, fold rows, seed) of the fit under way: the fold processes inherit it when forked


def _fold_scores(i: int) -> np.ndarray:
    """Fold ``i``'s held-out option scores: the reader's features, a logistic regression fitted on the fold's
    training rows, its probability that each held-out option is correct."""
    reader, parts, seed = _FOLDS
    train, test = parts[i]
    x_train, x_test = reader.features(train, test)
    model = LogisticRegression(C=1.0, max_iter=2000, random_state=seed).fit(x_train, train["correct"])
    return model.predict_proba(x_test)[:, 1]


# every column the readers, the folds and the prediction rows read: two frames equal on these get equal predictions
_READ = ("item_id", "unit_id", "granularity", "multi_answer", "question", "answer", "split", "n_options", *META,
         *LETTERS)
_TAGS_ONLY = tuple(c for c in META if c not in ("dataset_id", "clinical_vqa_task"))  # read by the metadata reader alone
_MEMO: OrderedDict[tuple, object] = OrderedDict()
_MEMO_SIZE = 24


def _memo(key: tuple, make):
    if key not in _MEMO:
        _MEMO[key] = make()
        while len(_MEMO) > _MEMO_SIZE:
            _MEMO.popitem(last=False)
    _MEMO.move_to_end(key)
    return _MEMO[key]


def _fingerprint(df: pd.DataFrame, by: str, tags: bool = True) -> str:
    """A digest of the rows, in order, on the columns the readers read (``tags``: with the columns only the
    metadata reader reads, as it spells them). An option cell is read only as text or not: a missing one counts
    the same whether None or NaN."""
    cols = [c for c in dict.fromkeys([*_READ, by]) if c in df and (tags or c not in _TAGS_ONLY)]
    frame = df[cols].copy()
    for c in LETTERS:
        if c in frame:
            frame[c] = frame[c].astype(object).where(frame[c].map(lambda v: isinstance(v, str)), None)
    rows = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    return hashlib.sha256(rows.tobytes() + "\x1f".join(cols).encode()).hexdigest()


def predictions(df: pd.DataFrame, folds: int, seed: int, by: str = "image_id", kind: str = "text",
                workers: int = 1) -> pd.DataFrame:
    """Out-of-fold predictions of one blind reader (``kind``: one of READERS, or 'prior' for the option-prior
    rule), folds grouped by ``by``. Remembered by content: selection fits the readers on the same items several
    times (before debiasing, each pass's first round, the audit), and equal rows give equal predictions."""
    full = _fingerprint(df, by)
    key = full if kind == "metadata" else _fingerprint(df, by, tags=False)
    made = _memo((key, folds, by, seed, kind), lambda: _fitted(df, folds, seed, by, kind, full, workers))
    return made.copy()


def _fitted(df: pd.DataFrame, folds: int, seed: int, by: str, kind: str, full: str, workers: int) -> pd.DataFrame:
    prepared = _memo((full, folds, by), lambda: fold_rows(df, folds, by))
    return prior_predictions(df, folds, prepared) if kind == "prior" else \
        blind_predictions(df, folds, seed, prepared, kind, workers)


def beyond_noise(accuracy: float, chance: float, n: int, z: float = 2.33) -> bool:
    """Whether ``accuracy`` over ``n`` items stands more than ``z`` standard errors of a chance-level accuracy above
    ``chance`` (one-sided, about 1 % at z = 2.33): a task of 70 items lands 0.1 above chance by luck alone one
    time in thirty, which a fixed margin would read as a prior."""
    return n > 0 and accuracy - chance > z * math.sqrt(max(chance * (1 - chance), 1e-12) / n)


def blind_report(pred: pd.DataFrame, margin: float, min_items: int, task_margin: float | None = None,
                 splits: tuple[str, ...] = ("test",)) -> dict:
    """Accuracy vs chance on the given splits, overall and per task with at least ``min_items`` items, and per
    task x dataset (reported); ``exceeds`` lists 'overall' when accuracy is above chance + ``margin`` and each
    task above chance + ``task_margin`` (``margin`` when not given) and beyond the noise of its item count."""
    task_margin = margin if task_margin is None else task_margin
    test = pred[pred["split"].isin(splits)]
    if test.empty:
        return {"items": 0, "accuracy": 0.0, "chance": 0.0, "by_task": {}, "by_task_dataset": {}, "exceeds": []}
    by_task, by_pair, exceeds = {}, {}, []
    acc, chance = float(test["hit"].mean()), float((1 / test["n_options"]).mean())
    if len(test) >= min_items and acc > chance + margin:
        exceeds.append("overall")
    for task, part in test.groupby("clinical_vqa_task"):
        a, c = float(part["hit"].mean()), float((1 / part["n_options"]).mean())
        by_task[task] = {"items": len(part), "accuracy": round(a, 4), "chance": round(c, 4)}
        if len(part) >= min_items and a > c + task_margin and beyond_noise(a, c, len(part)):
            exceeds.append(task)
    if "dataset_id" in test and test["dataset_id"].notna().all():
        for (task, ds), part in test.groupby(["clinical_vqa_task", "dataset_id"]):
            by_pair[f"{task} / {ds}"] = {"items": len(part), "accuracy": round(float(part["hit"].mean()), 4),
                                         "chance": round(float((1 / part["n_options"]).mean()), 4)}
    return {"items": len(test), "accuracy": acc, "chance": chance, "by_task": by_task, "by_task_dataset": by_pair,
            "exceeds": exceeds}
