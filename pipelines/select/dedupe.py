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


def _kinds(planes: pd.DataFrame) -> dict[str, str]:
    """dataset -> its task type where ``planes`` carries one (registrations of one task type that read the same
    images are one source twice; a diagnosis and a segmentation of the same images are two benchmarks of it)."""
    if "task_type" not in planes:
        return {}
    return dict(zip(planes["dataset_id"], planes["task_type"]))


def duplicate_pairs(planes: pd.DataFrame, min_overlap: float = 0.5) -> list[tuple[str, str, float]]:
    """(earlier, later, share of the later's planes held by the earlier) for registrations of the same task type
    reading the same images. ``planes``: dataset_id, sha256 of every described plane (task_type, optional)."""
    sets = {ds: set(part["sha256"]) for ds, part in planes.groupby("dataset_id", sort=True)}
    kinds = _kinds(planes)
    out = []
    ids = sorted(sets)
    for i, a in enumerate(ids):
        for b in ids[i + 1:]:
            if kinds.get(a) != kinds.get(b):
                continue
            share = len(sets[a] & sets[b]) / max(len(sets[b]), 1)
            if share >= min_overlap:
                out.append((a, b, round(share, 4)))
    return out


def duplicate_planes(planes: pd.DataFrame, bits: int, min_overlap: float = 0.5) -> dict[str, str]:
    """image id -> the earlier registration holding the same image, for every plane left to it."""
    planes = planes.sort_values(["dataset_id", "image_id"], kind="stable")
    out: dict[str, str] = {}
    kinds = _kinds(planes)
    key = planes["sha256"] + "\x1f" + planes["dataset_id"].map(kinds).fillna("") if kinds else planes["sha256"]
    planes = planes.assign(_key=key)
    first = planes.drop_duplicates("_key")
    owner = dict(zip(first["_key"], first["dataset_id"]))
    for image_id, ds, k in zip(planes["image_id"], planes["dataset_id"], planes["_key"]):
        if owner.get(k, ds) != ds:
            out[image_id] = owner[k]
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


def same_folder_pairs(roots: dict[str, Path], task_types: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """Registrations (id -> dataset root) of one task type (``task_types``, when given) that read the same folder:
    likely one source under two identities."""
    by_root: dict[str, list[str]] = {}
    for ds, root in sorted(roots.items()):
        by_root.setdefault(str(Path(root).resolve()) + "\x1f" + (task_types or {}).get(ds, ""), []).append(ds)
    return [(a, b) for ids in by_root.values() for i, a in enumerate(ids) for b in ids[i + 1:]]
