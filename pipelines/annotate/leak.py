"""Which annotated images the exam uses: an ROI annotation of such an image names the marked structure of a
test item and outlines it, so it is the key. Those stay private; only images no test item can be linked to
are published.

An image is linked to the exam when it is a test item's image, has the same pixels as one (the same plane
registered twice, or stored as NIfTI and NRRD), belongs to the group of a test item (another plane or window
of the same scan), or falls into a test item's leakage component (pipelines.validity.leakage: groups joined
by identical or near-identical planes), computed over the annotated and the test images together.
"""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pandas as pd
from PIL import Image

from pipelines.validity.leakage import leak_components

REASONS = ("test image", "pixel-identical to a test image", "group of a test item",
           "leakage component of a test item")
KEYS = ["image_id", "group_id", "sha256", "phash"]


def exam_images(bench: pd.DataFrame, planes: pd.DataFrame) -> pd.DataFrame:
    """The planes (image_id, group_id, sha256, phash) test items show, from the benchmark rows (every subset)
    and the slices' hashes; groups that share a test item's leakage component (``split_group``) come along."""
    test = bench[bench["split"] == "test"]
    groups = set(test["group_id"])
    if "split_group" in bench:
        comps = set(test["split_group"].dropna())
        groups |= set(bench.loc[bench["split_group"].isin(comps), "group_id"])
    shown = planes[planes["image_id"].isin(set(test["image_id"]))]
    extra = pd.DataFrame({"image_id": None, "group_id": sorted(groups - set(shown["group_id"])), "sha256": None,
                          "phash": None})
    return pd.concat([shown[KEYS], extra], ignore_index=True)


def exam_links(images: pd.DataFrame, exam: pd.DataFrame, bits: int) -> pd.DataFrame:
    """Every image of ``images`` (columns image_id, group_id, sha256, phash) linked to an ``exam`` plane, with
    the first reason of REASONS that holds (empty frame: nothing links)."""
    if images.empty or exam.empty:
        return pd.DataFrame({"image_id": pd.Series([], dtype=object), "reason": pd.Series([], dtype=object)})
    imgs = images[KEYS].drop_duplicates("image_id").reset_index(drop=True)
    reason = pd.Series(None, index=imgs.index, dtype=object)
    for why, hit in ((REASONS[0], imgs["image_id"].isin(set(exam["image_id"].dropna()))),
                     (REASONS[1], imgs["sha256"].isin(set(exam["sha256"].dropna()))),
                     (REASONS[2], imgs["group_id"].isin(set(exam["group_id"].dropna())))):
        reason = reason.where(reason.notna() | ~hit, why)
    nodes = pd.concat([imgs.assign(_exam=False), exam[KEYS].assign(_exam=True)], ignore_index=True)
    unknown = nodes["group_id"].isna()  # an id the slices do not know: its own group, joined by pixels only
    nodes.loc[unknown, "group_id"] = [f"?{i}" for i in nodes.index[unknown]]
    nodes["phash"] = nodes["phash"].where(nodes["phash"].map(lambda h: isinstance(h, str) and len(h) == 16), "")
    comp = leak_components(nodes, bits)
    linked = comp[: len(imgs)].isin(set(comp[nodes["_exam"]])).to_numpy()
    reason = reason.where(reason.notna() | ~linked, REASONS[3])
    out = pd.DataFrame({"image_id": imgs["image_id"], "reason": reason})
    return out[out["reason"].notna()].reset_index(drop=True)


def pixel_hashes(png: bytes) -> set[str]:
    """sha256 of a decoded image's pixels as the describe step hashes a plane: the RGB bytes, and the first
    channel's when the three are equal (a grey plane stored as RGB)."""
    arr = np.asarray(Image.open(io.BytesIO(png)))
    out = {hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()}
    if arr.ndim == 3 and arr.shape[2] >= 3 and np.array_equal(arr[..., 0], arr[..., 1]) \
            and np.array_equal(arr[..., 1], arr[..., 2]):
        out.add(hashlib.sha256(np.ascontiguousarray(arr[..., 0]).tobytes()).hexdigest())
    return out


def published_leaks(public: pd.DataFrame, planes: pd.DataFrame, exam: pd.DataFrame, bits: int) -> pd.DataFrame:
    """The check on what was written: every public row (image_id and the image's PNG bytes in ``png``) linked
    to the exam, its image hashed from the published pixels (not trusted from an id) and its group and pHash
    read from the slices of its id."""
    if public.empty:
        return exam_links(public.reindex(columns=KEYS), exam, bits)
    known = planes.drop_duplicates("image_id").set_index("image_id")
    rows = []
    exam_sha = set(exam["sha256"].dropna())
    for image_id, png in zip(public["image_id"], public["png"]):
        shas = pixel_hashes(png)
        sha = next(iter(shas & exam_sha), next(iter(sorted(shas))))
        g = known.loc[image_id] if image_id in known.index else None
        rows.append({"image_id": image_id, "group_id": g["group_id"] if g is not None else None, "sha256": sha,
                     "phash": g["phash"] if g is not None else None})
    return exam_links(pd.DataFrame(rows, columns=KEYS), exam, bits)
