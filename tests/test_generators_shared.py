"""The geometric generators on the real ../shared registry: every key re-derived from the raw TotalSegmentator
label volume and its affine (nibabel, not the pipeline's SimpleITK reader nor its tables), from the exported
Parquet rows and the export's private key alone; the mirrored consistency copies are pixel mirrors with the
original's key; robustness copies keep their original's question and key."""

from __future__ import annotations

import io
import json
from functools import lru_cache

import nibabel as nib
import numpy as np
import pytest
import yaml
from PIL import Image
from scipy import ndimage
from scipy.spatial import ConvexHull

from tests.conftest import PROJECT_ROOT, SHARED, exported_rows, needs_shared

pytestmark = [needs_shared, pytest.mark.slow]
DATASET = "totalseg_ct_nifti"
LABEL_MAP = PROJECT_ROOT / "tests" / "shared_registry" / "label_maps" / "totalseg.yaml"
TAN_22_5 = np.tan(np.radians(22.5))


@pytest.fixture(scope="module")
def items(shared_build):
    rows = exported_rows(shared_build.data_root / "benchmark")
    rows = rows[rows["dataset_id"] == DATASET].copy()
    rows["params"] = [json.loads(p) if isinstance(p, str) else None for p in rows["generator_params"]]
    return rows


@lru_cache(maxsize=4)
def volume(source_path: str) -> tuple[np.ndarray, np.ndarray]:
    """The raw label volume (RAS+ canonical, as nibabel reorients it) and its affine."""
    img = nib.as_closest_canonical(nib.load(SHARED / DATASET / "labels" / source_path.split("/")[-1]))
    return np.asarray(img.dataobj).astype(np.int32), img.affine


@lru_cache(maxsize=1)
def label_values() -> dict[str, int]:
    values = yaml.safe_load(LABEL_MAP.read_text())["values"]
    return {name: int(v) for v, name in values.items()}


def plane_voxels(plane: dict) -> tuple[np.ndarray, np.ndarray]:
    """(labels, voxel index grid) of one exported plane, cut from the RAS array: the pipeline's index counts
    along its L-P-S axes, so an index i along an axis that runs R->L here is n-1-i."""
    data, _ = volume(plane["source_path"])
    nx, ny, _ = data.shape
    idx = np.indices(data.shape)
    i = plane["index"]
    sl = {"axial": (slice(None), slice(None), i), "coronal": (slice(None), ny - 1 - i, slice(None)),
          "sagittal": (nx - 1 - i, slice(None), slice(None))}[plane["axis"]]
    return data[sl], np.stack([idx[d][sl] for d in range(3)], axis=-1)


def world(voxels: np.ndarray, affine: np.ndarray) -> np.ndarray:
    return voxels @ affine[:3, :3].T + affine[:3, 3]


def structure(plane: dict, raw_label: str) -> np.ndarray:
    """The outlined structure: the label's largest 8-connected piece on the plane (a generator marks a label only
    where it is one visible piece; specks far below the region floor may lie beside it, unmarked)."""
    labels, _ = plane_voxels(plane)
    pieces, n = ndimage.label(labels == label_values()[raw_label], structure=np.ones((3, 3)))
    assert n >= 1
    return pieces == 1 + int(np.argmax(np.bincount(pieces.ravel())[1:]))


def centroid_mm(plane: dict, raw_label: str) -> np.ndarray:
    _, vox = plane_voxels(plane)
    return world(vox[structure(plane, raw_label)].astype(float), volume(plane["source_path"])[1]).mean(axis=0)


def pixel_area_mm2(plane: dict) -> float:
    _, affine = volume(plane["source_path"])
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    keep = {"axial": (0, 1), "coronal": (0, 2), "sagittal": (1, 2)}[plane["axis"]]
    return float(zooms[keep[0]] * zooms[keep[1]])


def key_text(row) -> str:
    return row[row["key"]]


def in_bin(text: str, value: float, scale: float = 1.0) -> bool:
    lo, hi = (float(v) for v in text.split(" ")[0].split("–"))
    return lo * scale <= value < hi * scale


def of(items, generator):
    part = items[(items["generator"] == generator) & items["variant_of"].isna()]
    assert len(part), f"no {generator} items exported from {DATASET}"
    return part


def test_size_comparison_keys(items):
    for _, r in of(items, "size_compare").iterrows():
        p = r["params"]
        areas = {m["colour"].capitalize(): structure(p["plane"], m["raw_label"]).sum() for m in p["marks"]}
        ranked = sorted(areas.values(), reverse=(p["mode"] == "largest"))
        assert areas[key_text(r)] == ranked[0]
        assert (ranked[0] >= 1.2 * ranked[1]) if p["mode"] == "largest" else (ranked[1] >= 1.2 * ranked[0])


def test_size_ratio_keys(items):
    for _, r in of(items, "size_ratio").iterrows():
        p = r["params"]
        a, b = (structure(p["plane"], m["raw_label"]).sum() for m in p["marks"])
        assert in_bin(key_text(r), a / b)


def test_relative_position_keys_from_the_affine(items):
    """The key's direction words agree with the centroid offset in world (RAS) millimetres."""
    axis_of = {"patient's left": (0, -1), "patient's right": (0, 1), "anterior": (1, 1), "posterior": (1, -1),
               "superior": (2, 1), "inferior": (2, -1)}
    for _, r in of(items, "relative_position").iterrows():
        p = r["params"]
        assert p["frame"] == "patient"
        a, b = (centroid_mm(p["plane"], m["raw_label"]) for m in p["marks"])
        d = a - b
        words = [w.strip().lower() for w in key_text(r).split(" and ")]
        named = [axis_of[w] for w in words]
        for dim, sign in named:
            assert np.sign(d[dim]) == sign, (r["index"], words, d)
        in_plane = {"axial": (0, 1), "coronal": (0, 2), "sagittal": (1, 2)}[p["plane"]["axis"]]
        if len(named) == 1:  # a straight direction: the other in-plane offset is small
            other = next(x for x in in_plane if x != named[0][0])
            assert abs(d[other]) <= TAN_22_5 * abs(d[named[0][0]]) + 1e-6
        else:
            ratio = abs(d[named[0][0]]) / abs(d[named[1][0]])
            assert TAN_22_5 <= ratio <= 1 / TAN_22_5


def test_laterality_keys_and_consistency_pairs(items, shared_build):
    """Left means toward -x in RAS from the body's midline (the vertebrae's centre). The consistency config holds
    each laterality item as shown (the same image) and mirrored left-right with a stem that says so; the patient's
    side, so the key, is the original's."""
    originals = of(items, "laterality")
    pairs = exported_rows(shared_build.data_root / "benchmark", "consistency/data")
    pairs = pairs[pairs["dataset_id"] == DATASET]
    shown = pairs[pairs["variant_kind"] == "as_shown"].set_index("variant_of")
    mirrored = pairs[pairs["variant_kind"] == "mirror"].set_index("variant_of")
    assert len(shown) == len(mirrored) == len(originals) > 0
    spine = [v for k, v in label_values().items() if k.startswith("vertebrae") or k == "spinal_cord"]
    for _, r in originals.iterrows():
        p = r["params"]
        data, affine = volume(p["plane"]["source_path"])
        mid = world(np.argwhere(np.isin(data, spine)).astype(float), affine)[:, 0].mean()
        x = centroid_mm(p["plane"], p["marks"][0]["raw_label"])[0]
        assert key_text(r) == ("Left" if x < mid else "Right")
        same, m = shown.loc[r["item_id"]], mirrored.loc[r["item_id"]]
        assert key_text(m) == key_text(same) == key_text(r)
        assert same["question"] == r["question"] and "mirrored left to right" in m["question"]
        assert "mirrored" not in r["question"]
        img = np.asarray(Image.open(io.BytesIO(r["image"]["bytes"])).convert("RGB"))
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(same["image"]["bytes"])).convert("RGB")), img)
        flipped = np.asarray(Image.open(io.BytesIO(m["image"]["bytes"])).convert("RGB"))
        assert np.array_equal(flipped, img[:, ::-1])


def test_measurement_keys(items):
    """Longest diameter between pixel corners in world mm (scipy hull), or area from the voxel size."""
    for _, r in of(items, "measurement").iterrows():
        p = r["params"]
        mask = structure(p["plane"], p["marks"][0]["raw_label"])
        if p["quantity"] == "area":
            assert in_bin(key_text(r), mask.sum() * pixel_area_mm2(p["plane"]) / 100.0)
            continue
        _, vox = plane_voxels(p["plane"])
        affine = volume(p["plane"]["source_path"])[1]
        free = [d for d in range(3) if len(np.unique(vox[..., d])) > 1]
        pts = vox[mask].astype(float)
        corners = np.concatenate([pts + np.eye(3)[free[0]] * dx + np.eye(3)[free[1]] * dy
                                  for dx in (-0.5, 0.5) for dy in (-0.5, 0.5)])
        xyz = world(corners, affine)
        hull = xyz[ConvexHull(xyz[:, free]).vertices]
        diameter = np.sqrt(((hull[:, None] - hull[None]) ** 2).sum(-1)).max()
        assert in_bin(key_text(r), diameter), (r["index"], key_text(r), diameter)


def test_instance_count_keys(items):
    """The 8-connected pieces of the union of the structure's raw labels on the plane."""
    for _, r in of(items, "instance_count").iterrows():
        p = r["params"]
        labels, _ = plane_voxels(p["plane"])
        union = np.isin(labels, [label_values()[raw] for raw in p["raw_labels"]])
        n = ndimage.label(union, structure=np.ones((3, 3)))[1]
        assert key_text(r).split(" ")[0] == str(n), (r["index"], key_text(r), n)


def test_robustness_copies_keep_question_and_key(shared_build):
    out = shared_build.data_root / "benchmark"
    main = exported_rows(out).set_index("item_id")
    copies = exported_rows(out, "robustness/data")
    assert len(copies) and copies["variant"].notna().all()
    kinds = set(zip(copies["variant_kind"], copies["variant_severity"]))
    assert len(kinds) == 12
    for _, c in copies.iterrows():
        base = main.loc[c["variant_of"]]
        assert c["question"] == base["question"] and c["key"] == base["key"] and c["split"] == base["split"]
        assert c["image"]["bytes"] != base["image"]["bytes"]


def test_candidates_do_not_depend_on_generator_workers(shared_build):
    """generators.workers runs each dataset's generators in forked processes beside the label questions; the
    candidate table (every dataset of the ../shared registry) must be the same Arrow table either way."""
    import pyarrow.parquet as pq

    from assets.candidates import dataset_rows
    from assets.resources import MedbenchResource
    from pipelines.candidates.rows import build_candidates
    from pipelines.candidates.options import pools_from_table
    from pipelines.vocab.frame import vocab_frame

    cfg = shared_build
    res = MedbenchResource(registry=str(cfg.registry), data_root=str(cfg.data_root))
    tables = cfg.data_root / "tables"
    args = (dataset_rows(res), vocab_frame(pq.read_table(tables / "label_vocab.parquet")),
            pq.read_table(tables / "question_templates.parquet").to_pandas(),
            pools_from_table(pq.read_table(tables / "option_pools.parquet").to_pandas()))
    one = build_candidates(*args, cfg.model_copy(update={"generators": cfg.generators.model_copy(update={"workers": 1})}))
    two = build_candidates(*args, cfg.model_copy(update={"generators": cfg.generators.model_copy(update={"workers": 3})}))
    assert one.table.num_rows > 10_000 and (one.table["generator"].to_pylist().count("size_compare") > 0)
    assert one.table.equals(two.table) and one.skipped == two.skipped
    assert one.table.equals(pq.read_table(tables / "qa_candidates.parquet"))
