"""Leakage components: groups that must fall in one split, across registrations and files.

A group (patient, volume or image, per registration) is not enough on its own: one scan registered
twice, or stored as two files (a crop beside the full volume), gives two groups with pixel-identical
planes, and two photographs of one field give near-identical images. Groups are joined when any of
their planes share an exact pixel hash (``slices.sha256``) or lie within ``bits`` of each other in
pHash; the connected components (union-find, by SciPy) are the units the split assigns.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from pipelines.validity.near_duplicates import hashes, near_duplicate_pairs


def _edges_by_key(codes: np.ndarray, key: pd.Series) -> np.ndarray:
    """(a, b) group-code pairs that share a value of ``key`` (each value's members chained to its first)."""
    frame = pd.DataFrame({"g": codes, "k": key.to_numpy()}).dropna()
    frame = frame[frame["k"] != ""]
    first = frame.groupby("k")["g"].transform("first")
    return np.stack([first.to_numpy(), frame["g"].to_numpy()], axis=1) if len(frame) else np.zeros((0, 2), int)


def leak_components(items: pd.DataFrame, bits: int) -> pd.Series:
    """A component id per row of ``items`` (columns ``group_id``, ``sha256``, ``phash``): the smallest
    group id of the connected component, so the id is stable and readable."""
    if items.empty:
        return pd.Series([], index=items.index, dtype=object)
    codes, groups = pd.factorize(items["group_id"], sort=True)
    edges = [_edges_by_key(codes, items["sha256"]), _edges_by_key(codes, items["phash"])]
    images = items.assign(_g=codes).drop_duplicates("phash")
    images = images[images["phash"].map(lambda h: isinstance(h, str) and bool(h))]
    if len(images) > 1:
        pairs = near_duplicate_pairs(hashes(images["phash"]), bits)
        g = images["_g"].to_numpy()
        edges.append(np.stack([g[pairs[:, 0]], g[pairs[:, 1]]], axis=1) if len(pairs) else np.zeros((0, 2), int))
    e = np.concatenate(edges).astype(np.int64)
    n = len(groups)
    graph = coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    smallest = pd.Series(np.asarray(groups), index=np.arange(n)).groupby(label).transform("min").to_numpy()
    return pd.Series(smallest[codes], index=items.index, dtype=object)


def cross_split_near_duplicates(phash: pd.Series, split: pd.Series, bits: int) -> tuple[int, list[tuple[str, str]]]:
    """How many image pairs within ``bits`` of each other (identical included) lie in different splits,
    and up to 10 example hash pairs: the leak the components exist to prevent."""
    frame = pd.DataFrame({"h": hashes(phash), "s": split.to_numpy()})
    per = frame.groupby(["h", "s"]).size().unstack(fill_value=0)  # images per (hash, split)
    cols = list(per.columns)
    if len(cols) < 2:
        return 0, []
    counts, uniq = per.to_numpy(), per.index.to_numpy(np.uint64)
    n, examples = 0, []
    same = sum(counts[:, a] * counts[:, b] for a in range(len(cols)) for b in range(a + 1, len(cols)))
    n += int(same.sum())
    examples += [(f"{h:016x}", f"{h:016x}") for h in uniq[same > 0][:10].tolist()]
    if len(uniq) > 1:
        pairs = near_duplicate_pairs(uniq, bits)
        ci, cj = counts[pairs[:, 0]], counts[pairs[:, 1]]
        cross = (ci.sum(1) * cj.sum(1)) - (ci * cj).sum(1)  # pairs minus same-split pairs
        n += int(cross.sum())
        examples += [(f"{uniq[i]:016x}", f"{uniq[j]:016x}") for i, j in pairs[cross > 0][:10].tolist()]
    return n, examples[:10]


def withhold_marked_leaks(items: pd.DataFrame, bits: int) -> tuple[pd.DataFrame, list[str]]:
    """The items safe to export, and the ids withheld. Splits are decided on the unmarked planes; a drawn mark
    can pull two planes of different groups to within ``bits`` (two warped copies of one scan at the same
    level, outlined alike). Such a pair would leak, so the val-side item is withheld (val is the smaller
    split; test keeps every item), together with the copies that point to it or that it points to.
    ``items`` needs item_id, split, subset, variant_of and ``phash``, the hash of the image as drawn."""
    main = items[items["subset"] == "main"]
    if main.empty or main["split"].nunique() < 2:
        return items, []
    uniq, inv = np.unique(hashes(main["phash"]), return_inverse=True)
    val = (main["split"] == "val").to_numpy()
    n_val = np.bincount(inv, weights=val, minlength=len(uniq)) > 0
    n_test = np.bincount(inv, weights=~val, minlength=len(uniq)) > 0
    meets_test = n_test.copy()  # a val image leaks when its hash, or a hash within bits of it, has a test image
    if len(uniq) > 1:
        i, j = near_duplicate_pairs(uniq, bits).T
        meets_test[i[n_val[i] & n_test[j]]] = True
        meets_test[j[n_val[j] & n_test[i]]] = True
    flagged = set(main.loc[val & meets_test[inv], "item_id"])
    linked = items["item_id"].isin(flagged) | items["variant_of"].isin(flagged)
    linked |= items["item_id"].isin(items.loc[linked, "variant_of"].dropna())
    return items[~linked], sorted(items.loc[linked, "item_id"])
