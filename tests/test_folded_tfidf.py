"""FoldedTexts against scikit-learn's TfidfVectorizer itself: the same matrices, entry for entry and in the same
stored order, so a model fitted on either gives the same numbers."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from pipelines.validity.blind import _crossed as tag_crossed
from pipelines.validity.blind import _terms
from pipelines.validity.exported import _crossed as position_crossed
from pipelines.validity.folded_tfidf import FoldedTexts

WORDS = ["liver", "spleen", "left", "kidney", "aorta", "the", "of", "2.5", "cm", "mass", "right", "lobe"]


def _texts(rng: np.random.Generator, n: int, kind: str) -> list[str]:
    pool = []
    for _ in range(max(n // 3, 2)):  # texts recur, as options and tags do
        words = " ".join(rng.choice(WORDS, rng.integers(1, 6)))
        if kind == "terms":
            pool.append(f"{words} || {rng.choice(WORDS)}")
        elif kind == "tags":
            pool.append(f"dataset_id=d{rng.integers(3)} modality=CT || {words}")
        else:
            pool.append(f"{rng.integers(4)}\x1f{words} || {rng.choice(WORDS)}")
    return [pool[i] for i in rng.integers(0, len(pool), n)]


def _same(a, b) -> bool:
    return a.shape == b.shape and a.indices.dtype == b.indices.dtype and np.array_equal(a.indptr, b.indptr) \
        and np.array_equal(a.indices, b.indices) and np.array_equal(a.data, b.data)


@pytest.mark.parametrize(("kind", "analyzer"), [("terms", _terms), ("tags", tag_crossed),
                                                ("positions", position_crossed)])
@pytest.mark.parametrize("seed", range(4))
def test_split_equals_the_vectorizer(kind, analyzer, seed):
    rng = np.random.default_rng(seed)
    texts = _texts(rng, 300, kind)
    texts[7] = f"{texts[7]} unseenword"  # a held-out term the training rows never use is dropped
    folded = FoldedTexts(texts, analyzer)
    for _ in range(3):
        held = np.zeros(len(texts), bool)
        held[rng.choice(len(texts), len(texts) // 3, replace=False)] = True
        held[7] = True
        train, test = np.flatnonzero(~held), np.flatnonzero(held)
        vec = TfidfVectorizer(analyzer=analyzer, min_df=1)
        want_train = vec.fit_transform([texts[i] for i in train])
        want_test = vec.transform([texts[i] for i in test])
        got_train, got_test = folded.split(train, test)
        assert _same(got_train, want_train) and _same(got_test, want_test)
        y = rng.integers(0, 2, len(train))
        p_want = LogisticRegression(max_iter=2000).fit(want_train, y).predict_proba(want_test)
        p_got = LogisticRegression(max_iter=2000).fit(got_train, y).predict_proba(got_test)
        assert np.array_equal(p_got, p_want)


def test_training_rows_keep_the_vectorizers_entry_order():
    # first appearances 'b' then 'a': the vectorizer stores row 0's entries as b, a (columns 1, 0), unsorted
    texts = ["b a", "a c", "c b"]
    got, _ = FoldedTexts(texts, str.split).split(np.arange(3), np.array([0]))
    want = TfidfVectorizer(analyzer=str.split).fit_transform(texts)
    assert list(want.indices[:2]) == [1, 0]
    assert _same(got, want)


def test_no_training_terms_is_the_vectorizers_error():
    folded = FoldedTexts(["", "a b"], str.split)
    with pytest.raises(ValueError, match="empty vocabulary"):
        folded.split(np.array([0]), np.array([1]))
    with pytest.raises(ValueError, match="empty vocabulary"):
        TfidfVectorizer(analyzer=str.split).fit_transform([""])
