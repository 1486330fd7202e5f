"""Independent re-derivation of what ROI annotations say about their plane, from the source files.

Nothing here reads the pipeline's slices/regions tables or calls its readers: label volumes are read with
nibabel and put in LPS order by nibabel's orientation tools, 2D masks with Pillow, VOC boxes with
ElementTree, counts with scipy.ndimage.label. From an annotation only the claimed plane (source file, axis,
index) and the statements are taken; the label vocabulary gives canonical names, the label map (YAML)
values, sides and exhaustiveness.

Checked per annotation: the ROI's own mask lies on its label in the rebuilt plane; "No other structure is
labelled" holds; the "Labelled on this plane" list names exactly the plane's labels; every relation names a
structure of the plane with its side kept (never a side-less name for a sided label) and its direction
agrees with the rebuilt masks' centroids; a stated count is for an exhaustive label and equals the number of
8-connected regions; a size in mm matches the Feret diameter with the header's spacing; no excluded or
unresolved label's name appears in the text.

Run as a script on a build: ``python -m tests.roi_rederive DATA_ROOT REGISTRY [--n 30] [--seed 0]``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import yaml
from PIL import Image
from pycocotools import mask as cocomask
from scipy import ndimage
from scipy.spatial import ConvexHull

VERIFIABLE = {"volume_pairs", "dicom_series", "mask_pairs", "voc", "csv_manifest"}
NAMED = {"mesh", "no_mesh"}
SIDES = {"left", "right"}


# -- sources -----------------------------------------------------------------------------------------------
@dataclass
class Plane:
    labels: dict[str, np.ndarray]  # raw label -> boolean mask on the displayed plane (empty masks never kept)
    spacing: tuple[float, float] | None  # (column, row) mm from the header; None for 2D files
    image_labels: set[str] = field(default_factory=set)  # whole-image class labels


def _lps(path: Path) -> tuple[np.ndarray, tuple[float, float, float]]:
    """A label volume indexed [x, y, z] with x toward the patient's left, y posterior, z superior."""
    img = nib.load(str(path))
    ornt = nib.orientations.io_orientation(img.affine)
    to = nib.orientations.ornt_transform(ornt, nib.orientations.axcodes2ornt(("L", "P", "S")))
    data = nib.orientations.apply_orientation(np.asanyarray(img.dataobj), to)
    zooms = img.header.get_zooms()[:3]
    spacing = tuple(float(z) for z, _ in sorted(zip(zooms, to[:, 0]), key=lambda t: t[1]))  # zooms move with their axes
    return np.asarray(data), spacing


def display_plane(vol: np.ndarray, axis: str, index: int) -> np.ndarray:
    """Radiological display of an [x(L), y(P), z(S)] volume: axial rows anterior->posterior, columns patient
    right->left; coronal and sagittal with the head at the top (sagittal columns anterior->posterior)."""
    if axis == "axial":
        return vol[:, :, index].T
    if axis == "coronal":
        return vol[:, index, :].T[::-1]
    return vol[index, :, :].T[::-1]


def _values(label_map: dict, path: Path | None = None) -> dict[int, str]:
    vals = {int(k): v for k, v in (label_map.get("values") or {}).items()}
    if not vals and path is not None and path.is_file():
        doc = json.loads(path.read_text())
        vals = {int(k): v for k, v in doc.get("labels", {}).items()}
    return vals


def rebuild(entry: dict, label_map: dict, row: dict) -> Plane:
    """The plane an annotation row claims, rebuilt from the dataset's files."""
    root, fmt, opts = Path(entry["root"]), entry["format"], entry.get("options") or {}
    if fmt in ("volume_pairs", "dicom_series"):
        if fmt == "dicom_series":
            lab = root / opts["label"]
        else:
            src = Path(row["source_path"])
            lab = root / (opts.get("labels") or "labels") / src.name
            if not lab.exists():
                lab = root / (opts.get("labels") or "labels") / src.name.replace("_image", "_label")
        vol, sp = _lps(lab)
        plane = display_plane(vol, row["axis"], int(row["slice_index"]))
        col_row = {"axial": (sp[0], sp[1]), "coronal": (sp[0], sp[2]), "sagittal": (sp[1], sp[2])}[row["axis"]]
        vals = _values(label_map)
        return Plane({vals[v]: plane == v for v in np.unique(plane) if v in vals}, col_row)
    if fmt == "mask_pairs":
        stem = Path(row["source_path"]).stem
        mpath = root / opts.get("masks", "masks") / opts.get("mask_name", "{stem}.png").format(
            stem=stem, name=Path(row["source_path"]).name)
        raw = np.asarray(Image.open(mpath).convert("RGB")).max(axis=2)
        fg = raw > opts.get("threshold", 127)
        fg = ~fg if opts.get("invert") else fg
        name = _values(label_map)[1]
        return Plane({name: fg} if fg.any() else {}, None)
    if fmt == "voc":
        xml = root / "Annotations" / f"{Path(row['source_path']).stem}.xml"
        tree = ET.parse(xml)
        w, h = int(tree.findtext("size/width")), int(tree.findtext("size/height"))
        labels: dict[str, np.ndarray] = {}
        for obj in tree.iter("object"):
            bb = obj.find("bndbox")
            x0, y0 = max(float(bb.findtext("xmin")) - 1, 0), max(float(bb.findtext("ymin")) - 1, 0)
            x1, y1 = min(float(bb.findtext("xmax")), w), min(float(bb.findtext("ymax")), h)
            m = labels.setdefault(obj.findtext("name"), np.zeros((h, w), bool))
            m[int(round(y0)):int(round(y1)), int(round(x0)):int(round(x1))] = True
        return Plane(labels, None)
    if fmt == "csv_manifest":
        table = pd.read_csv(root / opts["file"])
        hit = table[table[opts["path_column"]].astype(str).map(lambda p: p.split("/")[-1])
                    == Path(row["source_path"]).name]
        return Plane({}, None, set(hit[opts["label_column"]].astype(str)))
    raise ValueError(f"format {fmt} is not re-derived here")


# -- names -------------------------------------------------------------------------------------------------
def side_of_raw(raw: str) -> str | None:
    words = re.split(r"[^0-9a-z]+", raw.lower())
    found = {w for w in words if w in SIDES} | {"left" for w in words if w == "lt"} | {"right" for w in words if w == "rt"}
    return found.pop() if len(found) == 1 else None


def expected_name(raw: str, canonical: str) -> str:
    """What the spec says a structure is called: side, ordinal number, canonical label, vertebral level."""
    tokens = re.split(r"[_\- ]+", raw)
    side = side_of_raw(raw)
    name = canonical
    number = next((int(t) for t in reversed(tokens) if t.isdigit()), None)
    if number is not None and str(number) not in canonical:
        suf = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
        name = f"{number}{suf} {name}"
    if side and side not in canonical.split():
        name = f"{side} {name}"
    level = next((t.upper() for t in tokens if re.fullmatch(r"[CTLSctls]\d{1,2}", t)), None)
    if level and level.lower() not in canonical.lower():
        name += f" ({level})"
    return name


# -- geometry ----------------------------------------------------------------------------------------------
DIRS = {"axial": ("L", "P"), "coronal": ("L", "I"), "sagittal": ("P", "I")}  # LPS display: columns, rows grow
OPP = {"L": "right", "R": "left", "P": "anterior", "A": "posterior", "I": "superior", "S": "inferior"}
NAME = {"L": "left", "R": "right", "P": "posterior", "A": "anterior", "I": "inferior", "S": "superior"}


def direction(dx: float, dy: float, axis: str) -> str:
    """Where a point lies relative to another from its display offset (normalized by the plane size)."""
    horizontal = abs(dx) >= abs(dy)
    step = dx if horizontal else dy
    if axis not in DIRS:
        return ("right of" if step > 0 else "left of") if horizontal else ("below" if step > 0 else "above")
    letter = DIRS[axis][0 if horizontal else 1]
    word = NAME[letter] if step > 0 else OPP[letter]
    return f"to the patient's {word} of" if word in SIDES else f"{word} to"


def centroid(m: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(m)
    return float(xs.mean()), float(ys.mean())


def feret(m: np.ndarray, sx: float, sy: float) -> float:
    ys, xs = np.nonzero(m)
    pts = np.concatenate([np.stack([xs + dx, ys + dy], 1) for dx in (0, 1) for dy in (0, 1)]) * np.array([sx, sy])
    hull = pts[ConvexHull(pts).vertices]
    return float(np.sqrt(((hull[:, None] - hull[None]) ** 2).sum(-1)).max())


# -- checks ------------------------------------------------------------------------------------------------
def check(row: dict, plane: Plane, names: dict[str, str], named: set[str], exhaustive: set[str],
          forbidden: set[str]) -> dict[str, list[str]]:
    """{check: problems} for one annotation row against its rebuilt plane."""
    out: dict[str, list[str]] = {k: [] for k in ("own_mask", "no_other", "labelled", "relations", "merged_side",
                                                 "counts", "size", "names")}
    text = row["caption"]
    low = text.lower()
    for bad in forbidden:
        if re.search(rf"\b{re.escape(bad.lower())}\b", low):
            out["names"].append(f"unnamed label '{bad}' in text")
    present = set(plane.labels) | plane.image_labels
    h, w = int(row["image_height"]), int(row["image_width"])
    if row["scope"] == "image":
        m = re.search(r"Labelled(?: on this (?:plane|image))?: (.*)\.$", text)
        listed = [s for s in (m.group(1).split(", ") if m else [])]
        unnamed = [s for s in listed if re.search(r"without an? (?:anatomical|clinical) name", s)]
        listed = sorted(set(listed) - set(unnamed))
        want = sorted({names[r] for r in present if r in named})
        if listed != want:
            out["labelled"].append(f"listed {listed} != plane {want}")
        n_unnamed = int(unnamed[0].split()[0]) if unnamed else 0
        if n_unnamed != len({r for r in present if r not in named}):
            out["labelled"].append(f"{n_unnamed} unnamed listed, plane has {sorted(present - named)}")
        return out
    raw = row["raw_label"]
    if row["kind"] == "image":
        if raw not in plane.image_labels:
            out["own_mask"].append(f"image label {raw} not in the manifest ({sorted(plane.image_labels)})")
        return out
    own = plane.labels.get(raw)
    if row["kind"] == "mask":
        roi = cocomask.decode({"size": [h, w], "counts": row["mask_rle"].encode()}).astype(bool)
    else:
        x0, y0, x1, y1 = (int(round(v)) for v in row["bbox"])
        roi = np.zeros((h, w), bool)
        roi[y0:y1, x0:x1] = True
    if own is None or own.shape != roi.shape or (roi & own).sum() < 0.98 * roi.sum():
        out["own_mask"].append(f"ROI not on its label {raw} in the rebuilt plane")
        return out
    others = present - {raw}
    if re.search(r"No other (?:structure is labelled|labelled structure is)", text):
        if others:
            out["no_other"].append(f"says no other structure; plane has {sorted(others)}")
        if (own & ~roi).any():
            out["no_other"].append(f"says no other structure; {int((own & ~roi).sum())} px of {raw} lie outside it")
    if "nothing else is labelled" in text and others:
        out["no_other"].append(f"says nothing else is labelled; plane has {sorted(others)}")
    by_name = {names[r]: r for r in present if r in named}
    cx, cy = centroid(roi)
    rels = json.loads(row["relations"]) if isinstance(row["relations"], str) else row["relations"]
    for e in (rels if rels is not None else []):
        s = e["structure"]
        if s not in by_name:
            sided = [r for r in present if r in named and side_of_raw(r) and names[r].endswith(s)]
            (out["merged_side"] if sided else out["relations"]).append(f"'{s}' is no structure of the plane")
            continue
        other = by_name[s]
        ox, oy = centroid(plane.labels[other])
        want = direction((cx - ox) / w, (cy - oy) / h, row["axis"])
        if e["side"] != want:
            out["relations"].append(f"{s}: says '{e['side']}', rebuilt '{want}'")
    for n in [row.get("name") or row["label"]]:
        if side_of_raw(raw) and side_of_raw(raw) not in n.split():
            out["merged_side"].append(f"name '{n}' drops the side of {raw}")
    m = re.search(r"label forms (\d+|1) (?:separate )?regions?", text)
    if m:
        n = int(m.group(1))
        if raw not in exhaustive:
            out["counts"].append(f"count stated for non-exhaustive {raw}")
        else:
            k = ndimage.label(own, structure=np.ones((3, 3)))[1]
            if k != n:
                out["counts"].append(f"says {n} regions, rebuilt plane has {k}")
    elif (m := re.search(r"one of (\d+) instances", text)):
        if raw not in exhaustive:
            out["counts"].append(f"count stated for non-exhaustive {raw}")
    m = re.search(r"longest in-plane diameter (\d+(?:\.\d+)?) mm", text)
    if m:
        if plane.spacing is None:
            out["size"].append("size in mm without a header spacing")
        else:
            d = feret(roi, *plane.spacing)
            if abs(d - float(m.group(1))) > 0.15:
                out["size"].append(f"says {m.group(1)} mm, rebuilt {d:.2f} mm")
    return out


def context_of(registry: Path, vocab: pd.DataFrame, dataset_id: str) -> tuple[dict, dict, dict[str, str], set, set, set]:
    doc = yaml.safe_load(registry.read_text())
    entry = next(d for d in doc["datasets"] if d["id"] == dataset_id)
    entry = {**entry, "root": str((registry.parent / entry["root"]).resolve())}
    label_map = yaml.safe_load((registry.parent / entry["label_map"]).read_text()) or {}
    v = vocab[vocab["dataset_id"] == dataset_id]
    names = {r.raw_label: expected_name(r.raw_label, r.canonical_label) for r in v.itertuples()}
    named = {r.raw_label for r in v.itertuples() if r.status in NAMED}
    default = bool(label_map.get("exhaustive", False))
    specs = label_map.get("labels") or {}
    all_raw = set(names) | set(_values(label_map).values())
    exhaustive = {r for r in all_raw if (specs.get(r) or {}).get("exhaustive", default)}
    forbidden = {x for r in v.itertuples() if r.status not in NAMED for x in (r.raw_label, r.canonical_label)}
    return entry, label_map, names, named, exhaustive, forbidden


def sample(ann: pd.DataFrame, registry: Path, n: int, seed: int) -> pd.DataFrame:
    """``n`` annotations, seeded, spread over the datasets whose format is re-derived here (one ROI and one image
    row in turn per dataset, cycling)."""
    ann = ann.reset_index(drop=True)
    doc = yaml.safe_load(registry.read_text())
    ok = {d["id"] for d in doc["datasets"] if d["format"] in VERIFIABLE
          and not (d["format"] == "dicom_series" and not (d.get("options") or {}).get("label", "").endswith((".nii", ".nii.gz")))}
    rng = np.random.default_rng(seed)
    pools = {}
    fmt = {d["id"]: d["format"] for d in doc["datasets"]}
    for ds in sorted(ok & set(ann["dataset_id"])):
        for scope in ("roi", "image"):
            part = ann[(ann["dataset_id"] == ds) & (ann["scope"] == scope)]
            if fmt[ds] == "volume_pairs":  # NIfTI pairs only (nibabel reads no NRRD)
                part = part[part["source_path"].str.endswith((".nii", ".nii.gz"))]
            if len(part):
                pools[(ds, scope)] = list(part.index[rng.permutation(len(part))])
    picked, keys = [], sorted(pools)
    while len(picked) < n and any(pools.values()):
        for k in keys:
            if pools[k] and len(picked) < n:
                picked.append(pools[k].pop())
    return ann.loc[picked]


def verify(ann: pd.DataFrame, vocab: pd.DataFrame, registry: Path, n: int = 30, seed: int = 0) -> pd.DataFrame:
    """One row per checked annotation: its id, dataset, and the problems each check found."""
    rows = []
    for r in sample(ann.reset_index(drop=True), registry, n, seed).to_dict("records"):
        entry, label_map, names, named, exhaustive, forbidden = context_of(registry, vocab, r["dataset_id"])
        plane = rebuild(entry, label_map, r)
        problems = check(r, plane, names, named, exhaustive, forbidden)
        rows.append({"annotation_id": r["annotation_id"], "dataset_id": r["dataset_id"], "scope": r["scope"],
                     **problems})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data_root", type=Path)
    ap.add_argument("registry", type=Path)
    ap.add_argument("--n", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--show", action="store_true", help="print every checked caption")
    a = ap.parse_args(argv)
    ann = pd.read_parquet(a.data_root / "tables" / "roi_annotations.parquet").reset_index(drop=True)
    vocab = pd.read_parquet(a.data_root / "tables" / "label_vocab.parquet")
    res = verify(ann, vocab, a.registry.resolve(), a.n, a.seed)
    checks = [c for c in res.columns if c not in ("annotation_id", "dataset_id", "scope")]
    if a.show:
        for r in res.itertuples():
            print(f"--- {r.dataset_id} {r.scope} {r.annotation_id}\n{ann.set_index('annotation_id').loc[r.annotation_id, 'caption']}")
            for c in checks:
                for p in getattr(r, c):
                    print(f"  PROBLEM {c}: {p}")
    print(res.groupby("dataset_id").size().to_string())
    for c in checks:
        print(f"{c}: {int((res[c].map(len) > 0).sum())} of {len(res)} annotations with a problem")
    return int(any((res[c].map(len) > 0).any() for c in checks))


if __name__ == "__main__":
    sys.exit(main())
