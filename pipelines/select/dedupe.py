"""One source, one identity: registrations that read the same images contribute them once.

Two registry entries can read the same scans (a volume as NIfTI and as NRRD, a DICOM series and its converted
copy, an npz and the PNGs it was exported to). Their planes are then pixel-identical, and the benchmark would
hold the same image twice, as two items. Before selection, the planes of every registration are compared with
those of every registration earlier in id order: a plane whose pixels (sha256) are already held, or whose pHash
lies within ``bits`` of a plane of a registration that shares at least ``min_overlap`` of its planes with this
one, is left to the earlier registration.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.validity.near_duplicates import hashes, near_duplicate_pairs


def duplicate_pairs(planes: pd.DataFrame, min_overlap: float = 0.5) -> list[tuple[str, str, float]]:
    """(earlier, later, share of the later's planes held by the earlier) for registrations reading the same
    images. ``planes``: dataset_id, sha256 of every described plane."""
    sets = {ds: set(part["sha256"]) for ds, part in planes.groupby("dataset_id", sort=True)}
    out = []
    ids = sorted(sets)
    for i, a in enumerate(ids):
        for b in ids[i + 1:]:
            share = len(sets[a] & sets[b]) / max(len(sets[b]), 1)
            if share >= min_overlap:
                out.append((a, b, round(share, 4)))
    return out


def duplicate_planes(planes: pd.DataFrame, bits: int, min_overlap: float = 0.5) -> dict[str, str]:
    """image id -> the earlier registration holding the same image, for every plane left to it."""
    planes = planes.sort_values(["dataset_id", "image_id"], kind="stable")
    out: dict[str, str] = {}
    first = planes.drop_duplicates("sha256")
    owner = dict(zip(first["sha256"], first["dataset_id"]))
    for image_id, ds, sha in zip(planes["image_id"], planes["dataset_id"], planes["sha256"]):
        if owner.get(sha, ds) != ds:
            out[image_id] = owner[sha]
    for a, b, _ in duplicate_pairs(planes, min_overlap):
        pa_, pb = planes[planes["dataset_id"] == a], planes[planes["dataset_id"] == b]
        pb = pb[~pb["image_id"].isin(out)]
        if pa_.empty or pb.empty:
            continue
        both = pd.concat([pa_[["image_id", "phash"]], pb[["image_id", "phash"]]], ignore_index=True)
        h = hashes(both["phash"])
        uniq, inv = np.unique(h, return_inverse=True)
        in_a = np.zeros(len(uniq), bool)
        in_a[inv[: len(pa_)]] = True
        near = in_a.copy()
        if len(uniq) > 1:
            i, j = near_duplicate_pairs(uniq, bits).T
            near[i[in_a[j]]] = True
            near[j[in_a[i]]] = True
        for image_id, code in zip(pb["image_id"].tolist(), inv[len(pa_):].tolist()):
            if near[code]:
                out[image_id] = a
    return out


def same_folder_pairs(roots: dict[str, Path]) -> list[tuple[str, str]]:
    """Registrations (id -> dataset root) that read the same folder: likely one source under two identities."""
    by_root: dict[str, list[str]] = {}
    for ds, root in sorted(roots.items()):
        by_root.setdefault(str(Path(root).resolve()), []).append(ds)
    return [(a, b) for ids in by_root.values() for i, a in enumerate(ids) for b in ids[i + 1:]]
