"""Geometry as a recorded fact: a per-image pixel-size table gives the physical keys (each re-derived here from the
mask files and the table with numpy/scipy, within 2 %), a closed outline is measured as the region it encloses, and
an image of unknown pixel size is never asked about in physical units.

The data: a copy of ../shared's Kvasir-SEG sample (5 colonoscopy images, their masks thresholded to PNG) written
under tmp_path, registered twice: once with a pixel-size CSV written here (in micrometres, one size per image),
once without (from a left-right mirrored copy, so the two registrations are not one source read twice). One mask
is replaced by a 2-px ellipse outline (a head circumference drawn as HC18 does). Five images give each size bin a
unit or two, so the key-balance floor is set to one unit for this build."""

from __future__ import annotations

import json
import re
import shutil

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image
from scipy import ndimage
from scipy.spatial import ConvexHull

from pipelines.geometry import read_pixel_table
from tests.conftest import PROJECT_ROOT, SHARED, built_config, exported_rows, needs_shared

KVASIR = SHARED / "kvasir_seg_polyp_sample"
SIZES_UM = [80.0, 120.0, 100.0, 150.0, 200.0]  # one per image, in sorted file order
RING = dict(centre=(300, 260), axes=(150, 100), angle=30)  # the outline drawn over the last image's mask
UNIT = re.compile(r"\d\s*(?:mm|cm|µm|um|nm|m)\b|mm²|cm²|µm²|millimet|centimet", re.IGNORECASE)


def write_copy(root, mirror: bool = False):
    """images/*.jpg (copied, or mirrored), masks/*.png (the JPEG masks thresholded at 127, mirrored alike; the last
    one an ellipse outline)."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    names = sorted(p.name for p in (KVASIR / "images").glob("*.jpg"))
    for i, name in enumerate(names):
        if mirror:
            Image.open(KVASIR / "images" / name).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(
                root / "images" / name, quality=95)
        else:
            shutil.copy(KVASIR / "images" / name, root / "images" / name)
        mask = (np.asarray(Image.open(KVASIR / "masks" / name).convert("L")) > 127).astype(np.uint8) * 255
        if mirror:
            mask = np.ascontiguousarray(mask[:, ::-1])
        if i == len(names) - 1:
            mask = np.zeros_like(mask)
            cv2.ellipse(mask, RING["centre"], RING["axes"], RING["angle"], 0, 360, 255, thickness=2)
        Image.fromarray(mask).save(root / "masks" / (name[:-4] + ".png"))
    return names


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    if not KVASIR.is_dir():
        pytest.skip(f"needs {KVASIR}")
    base = tmp_path_factory.mktemp("geometry")
    names = write_copy(base / "kvasir_copy")
    write_copy(base / "kvasir_mirrored", mirror=True)
    pd.DataFrame({"file": names, "pixel size (um)": SIZES_UM}).to_csv(base / "pixel_sizes.csv", index=False)
    label_map = str(PROJECT_ROOT / "tests" / "shared_registry" / "label_maps" / "kvasir.yaml")
    entry = {"root": "kvasir_copy", "format": "mask_pairs", "modality": "Endoscopy", "dimension": 2, "task_type": "seg",
             "label_map": label_map, "license": "research-only (Kvasir-SEG terms)",
             "options": {"mask_name": "{stem}.png", "mode": "binary"}}
    reg = {"version": 1, "datasets": [
        {"id": "kvasir_sized", **entry, "pixel_size": {"table": "pixel_sizes.csv", "id_column": "file",
                                                        "value_column": "pixel size (um)", "unit": "um"}},
        {"id": "kvasir_unsized", **entry, "root": "kvasir_mirrored"}]}
    (base / "sources.yaml").write_text(yaml.safe_dump(reg, sort_keys=False))
    yield from built_config(base / "sources.yaml", base, {"benchmark": {"balance_floor": 1}})


def source_mask(path: str) -> np.ndarray:
    return np.asarray(Image.open(path)) > 127


def structure(mask: np.ndarray) -> tuple[np.ndarray, bool]:
    """The marked structure as a reader should see it: the largest 8-connected piece, filled when it is a thin
    closed outline (its enclosed hole far larger than the line)."""
    lab, _ = ndimage.label(mask, structure=np.ones((3, 3)))
    piece = lab == 1 + int(np.argmax(np.bincount(lab.ravel())[1:]))
    filled = ndimage.binary_fill_holes(piece)
    outline = (filled & ~piece).sum() > 4 * piece.sum()
    return (filled if outline else piece), outline


def hull_diameter(region: np.ndarray, s: float) -> float:
    ys, xs = np.nonzero(region)
    corners = np.concatenate([np.stack([xs + dx, ys + dy], 1) for dx in (0, 1) for dy in (0, 1)]).astype(float)
    hull = corners[ConvexHull(corners).vertices]
    return float(np.sqrt(((hull[:, None] - hull[None]) ** 2).sum(-1)).max()) * s


def moment_major_axis(region: np.ndarray, s: float) -> float:
    """Major axis of a filled ellipse from its second moments (pixels as unit squares: variance + 1/12)."""
    ys, xs = np.nonzero(region)
    cov = np.cov(np.stack([xs, ys]).astype(float)) + np.eye(2) / 12.0
    return 4.0 * float(np.sqrt(np.linalg.eigvalsh(cov).max())) * s


def bin_bounds(text: str) -> tuple[float, float]:
    lo, hi = re.match(r"([\d.]+)–([\d.]+)", text).groups()
    return float(lo), float(hi)


@needs_shared
@pytest.mark.slow
def test_table_pixel_sizes_reach_every_sample_and_key(build):
    cfg, _ = build
    root = cfg.data_root
    samples = pd.read_parquet(root / "tables" / "raw_samples" / "kvasir_sized.parquet")
    expect = dict(zip(sorted(samples["source_path"]), SIZES_UM))
    for r in samples.itertuples():
        assert r.spacing_source == "table"
        assert list(r.spacing) == pytest.approx([expect[r.source_path] / 1000.0] * 2)
    unsized = pd.read_parquet(root / "tables" / "slices" / "kvasir_unsized.parquet")
    assert (unsized["spacing_source"] == "unknown").all() and all(len(s) == 0 for s in unsized["spacing"])

    cands = pd.read_parquet(root / "tables" / "qa_candidates.parquet")
    meas = cands[(cands["generator"] == "measurement") & (cands["dataset_id"] == "kvasir_sized")]
    meas = meas.drop_duplicates("unit_id")
    assert len(meas) >= 3 and (meas["spacing_source"] == "table").all()
    seen_outline = False
    for r in meas.itertuples():
        p = json.loads(r.generator_params)
        assert p["unit"] in ("mm", "cm²") and p["spacing_source"] == "table"
        rel = p["plane"]["source_path"]
        s_mm = expect[rel] / 1000.0
        region, outline = structure(source_mask(str(cfg.data_root.parent / "kvasir_copy" / "masks" /
                                                    (rel.split("/")[-1][:-4] + ".png"))))
        assert p["outline_filled"] == outline
        if p["quantity"] == "area":
            truth = region.sum() * s_mm * s_mm / 100.0  # cm²
        elif outline:
            truth = moment_major_axis(region, s_mm)
            assert truth == pytest.approx(2 * RING["axes"][0] * s_mm, rel=0.02)  # the drawn ellipse, by hand
        else:
            truth = hull_diameter(region, s_mm)
        assert p["value"] == pytest.approx(truth, rel=0.02), (rel, p)
        lo, hi = bin_bounds(r.answer_label.split(" ", 1)[1])
        assert lo <= truth < hi
        seen_outline |= outline
    # the outline was filled: its region is the enclosed ellipse, not the 2-px ring
    regions = pd.read_parquet(root / "tables" / "regions" / "kvasir_sized.parquet")
    ring_rows = regions[regions["outline_filled"]]
    assert len(ring_rows) == 1
    a, b = RING["axes"]
    assert ring_rows["area_px"].iloc[0] == pytest.approx(np.pi * a * b, rel=0.03)
    assert seen_outline

    items = exported_rows(root / "benchmark")
    sized = items[(items["dataset_id"] == "kvasir_sized") & (items["generator"] == "measurement")]
    assert len(sized) > 0
    for r in sized.itertuples():  # the stated pixel size is the table's, at display scale
        p = json.loads(r.generator_params)
        stated = float(re.search(r"([\d.]+) mm", r.question).group(1))
        assert stated == pytest.approx(p["display_mm_per_px"], rel=0.005)


@needs_shared
@pytest.mark.slow
def test_no_physical_unit_without_a_known_pixel_size(build):
    cfg, _ = build
    root = cfg.data_root
    items = exported_rows(root / "benchmark")
    unsized = items[items["dataset_id"] == "kvasir_unsized"]
    assert len(unsized) > 0
    text = unsized[["question", "A", "B", "C", "D", "E"]].fillna("").astype(str).agg(" ".join, axis=1)
    assert not text.str.contains(UNIT).any(), text[text.str.contains(UNIT)].tolist()
    cands = pd.read_parquet(root / "tables" / "qa_candidates.parquet")
    meas = cands[(cands["generator"] == "measurement") & (cands["dataset_id"] == "kvasir_unsized")]
    meas = meas.drop_duplicates("unit_id")
    assert len(meas) >= 3
    for r in meas.itertuples():
        p = json.loads(r.generator_params)
        assert p["unit"] == "%" and p["spacing_source"] == "unknown" and "display_mm_per_px" not in p
        rel = p["plane"]["source_path"]
        region, _ = structure(source_mask(str(cfg.data_root.parent / "kvasir_mirrored" / "masks" /
                                              (rel.split("/")[-1][:-4] + ".png"))))
        h, w = region.shape
        truth = (100.0 * region.sum() / (h * w) if p["quantity"] == "area_fraction"
                 else 100.0 * (moment_major_axis(region, 1.0) if p["outline_filled"] else hull_diameter(region, 1.0)) / w)
        assert p["value"] == pytest.approx(truth, rel=0.02), p
    roi_free = pd.read_parquet(root / "tables" / "slices" / "kvasir_unsized.parquet")
    assert (roi_free["spacing_source"] == "unknown").all()


def test_pixel_table_problems_are_named(tmp_path):
    """Bad values and conflicting duplicates are left out and named; an image with no row is unknown, not 1 mm."""
    path = tmp_path / "sizes.csv"
    path.write_text("id,mm\na.png,0.1\nb.png,zero\nc.png,0.2\nc.png,0.3\nd.png,-1\ne.png,0.5\ne.png,0.5\n")
    t = read_pixel_table(path, "id", "mm", "mm")
    assert t.lookup("images/a.png") == ([0.1, 0.1], "table")
    assert t.lookup("images/e.png", "e") == ([0.5, 0.5], "table")  # an identical duplicate is fine
    for name in ("b.png", "c.png", "d.png", "zzz.png"):
        assert t.lookup(f"images/{name}") == ([], "unknown")
    notes = "\n".join(t.notes())
    assert "'zero'" in notes and "'c.png' is listed with different" in notes and "'-1'" in notes
    assert "4 image(s) have no row" in notes


def test_outline_is_filled_and_measured_by_its_ellipse():
    """A 2-px ellipse ring (semi-axes 60 x 35 px, drawn by OpenCV) becomes the enclosed region; its length is the
    fitted ellipse's major axis (2 x 61 px to the ring's outer edge, by construction) and a thick ring (a myocardium
    around its cavity) or an open arc stays as drawn."""
    from pipelines.config import StandardizeSettings
    from pipelines.candidates.generators.measure import ellipse_major, feret_mm
    from pipelines.standardize.outlines import fill_outlines

    s = StandardizeSettings()
    ring = np.zeros((200, 240), np.uint8)
    cv2.ellipse(ring, (120, 100), (60, 35), 25, 0, 360, 1, thickness=2)
    inst = ring.astype(np.int32)
    assert fill_outlines(inst, s) == {1}
    region = inst == 1
    assert region.sum() == pytest.approx(np.pi * 61 * 36, rel=0.03)  # the outer edge of the 2-px line
    assert ellipse_major(region, 0.5, 0.5) == pytest.approx(2 * 61 * 0.5, rel=0.02)
    assert moment_major_axis(region, 1.0) == pytest.approx(2 * 61, rel=0.02)
    assert feret_mm(region, 1.0, 1.0) == pytest.approx(2 * 61, rel=0.03)
    thick = np.zeros((200, 240), np.uint8)
    cv2.ellipse(thick, (120, 100), (60, 35), 25, 0, 360, 1, thickness=14)
    arc = np.zeros((200, 240), np.uint8)
    cv2.ellipse(arc, (120, 100), (60, 35), 25, 0, 300, 1, thickness=2)
    for m in (thick, arc):
        inst = m.astype(np.int32)
        assert fill_outlines(inst, s) == set() and (inst == 1).sum() == m.sum()


def test_feret_diameter_is_the_largest_distance_between_pixel_corners():
    """Against brute force over every pair of pixel corners: irregular, holed and several-piece masks, pixels on
    the image border, anisotropic pixels."""
    from itertools import combinations

    from pipelines.candidates.generators.measure import feret_mm

    rng = np.random.default_rng(7)
    for _ in range(60):
        h, w = (int(v) for v in rng.integers(2, 14, 2))
        mask = rng.random((h, w)) < rng.uniform(0.05, 0.9)
        if not mask.any():
            continue
        sx, sy = (float(v) for v in rng.uniform(0.3, 2.0, 2))
        ys, xs = np.nonzero(mask)
        corners = {(x + dx, y + dy) for x, y in zip(xs.tolist(), ys.tolist()) for dx in (0, 1) for dy in (0, 1)}
        brute = max((np.hypot((a[0] - b[0]) * sx, (a[1] - b[1]) * sy) for a, b in combinations(corners, 2)))
        assert feret_mm(mask, sx, sy) == pytest.approx(brute, rel=1e-9)
