"""TF-IDF matrices of many cross-validation folds from one analysis of the texts.

The leak and blind readers fit scikit-learn's ``TfidfVectorizer`` on the training rows of each fold and apply it to
the held-out rows. Analysing every text again, fold after fold and reader after reader, was most of their cost.
:class:`FoldedTexts` analyses each distinct text once; :meth:`FoldedTexts.split` then builds, for any split, the
matrices the vectorizer (``min_df=1``, its other settings at their defaults) builds: the same terms, the same
columns (the training terms in sorted order) and the same stored order of every row's entries. The training rows
keep the vectorizer's order, its terms by first appearance in the training texts; the held-out rows are sorted. A
model fitted on them therefore gives the same numbers to the last bit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix
from sklearn.feature_extraction.text import TfidfTransformer


class FoldedTexts:
    """The texts of every row, analysed once (terms numbered in sorted order over all rows)."""

    def __init__(self, texts: Sequence[str] | pd.Series, analyzer: Callable[[str], Iterable[str]]):
        codes, distinct = pd.factorize(pd.Series(list(texts), dtype=object), sort=False)
        terms = [list(analyzer(t)) for t in distinct]
        vocab = sorted({t for ts in terms for t in ts})
        number = {t: i for i, t in enumerate(vocab)}
        self.doc = codes.astype(np.int64)  # row -> distinct text
        lens = np.array([len(ts) for ts in terms], np.int64)
        self.ptr = np.concatenate([[0], np.cumsum(lens)])  # distinct text -> its terms in self.terms
        self.terms = np.array([number[t] for ts in terms for t in ts], np.int64)

    def _flat(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row position within ``rows``, term number) of every term of those rows, in row and analysis order."""
        d = self.doc[rows]
        lens = self.ptr[d + 1] - self.ptr[d]
        owner = np.repeat(np.arange(len(rows)), lens)
        offset = np.arange(int(lens.sum())) - np.repeat(np.cumsum(lens) - lens, lens)
        return owner, self.terms[np.repeat(self.ptr[d], lens) + offset]

    def _counts(self, n: int, owner: np.ndarray, col: np.ndarray, order_key: np.ndarray | None,
                width: int) -> csr_matrix:
        """Rows of term counts; entries of a row ordered by ``order_key`` of their column (sorted when None)."""
        pair, count = np.unique(owner * width + col, return_counts=True)  # width >= 1: split refuses no terms
        row, col = pair // width, pair % width
        if order_key is not None:
            keep = np.lexsort((order_key[col], row))
            row, col, count = row[keep], col[keep], count[keep]
        indptr = np.concatenate([[0], np.cumsum(np.bincount(row, minlength=n))]).astype(np.int32)
        return csr_matrix((count.astype(np.float64), col.astype(np.int32), indptr), shape=(n, width))

    def split(self, train: np.ndarray, test: np.ndarray) -> tuple[csr_matrix, csr_matrix]:
        """(training matrix, held-out matrix) of TF-IDF features, ``train`` and ``test`` being row positions: what
        ``TfidfVectorizer(analyzer=..., min_df=1)`` gives by ``fit_transform`` of the training texts and
        ``transform`` of the held-out ones."""
        train, test = np.asarray(train, np.int64), np.asarray(test, np.int64)
        owner, term = self._flat(train)
        seen, first = np.unique(term, return_index=True)  # the training vocabulary (sorted) and first appearances
        if not len(seen):
            raise ValueError("empty vocabulary; perhaps the documents only contain stop words")
        counts = self._counts(len(train), owner, np.searchsorted(seen, term), first, len(seen))
        tfidf = TfidfTransformer().fit(counts)
        t_owner, t_term = self._flat(test)
        at = np.minimum(np.searchsorted(seen, t_term), len(seen) - 1)
        known = seen[at] == t_term  # terms the training texts never used are dropped, as the vectorizer drops them
        held = self._counts(len(test), t_owner[known], at[known], None, len(seen))
        return tfidf.transform(counts, copy=False), tfidf.transform(held, copy=False)
