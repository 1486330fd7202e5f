"""Standardization on real volumes and masks: orientation, windows, components, filters, grids."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import SimpleITK as sitk
import yaml

from pipelines.config import PipelineConfig
from pipelines.ingest import ingest
from pipelines.sources.registry import load_registry
from pipelines.standardize.regions import decode_rle
from pipelines.standardize.run import standardize_dataset
from tests.conftest import SHARED, needs_shared


def run(cfg: PipelineConfig, ds: str, out: Path, workers: int = 1):
    src = load_registry(cfg.registry).get(ds)
    return standardize_dataset(src, cfg, ingest(src, cfg).samples, out, workers=workers)


def one_volume_registry(tmp: Path, image: Path, label: Path, values: dict, modality: str = "CT",
                        **overrides) -> PipelineConfig:
    root = tmp / "vol"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir(parents=True)
    shutil.copy(image, root / "images" / image.name)
    shutil.copy(label, root / "labels" / image.name)
    (tmp / "lm.yaml").write_text(yaml.safe_dump({"values": values}))
    (tmp / "sources.yaml").write_text(yaml.safe_dump({"version": 1, "datasets": [{
        "id": "vol", "root": str(root), "format": "volume_pairs", "modality": modality, "dimension": 3,
        "task_type": "seg", "label_map": str(tmp / "lm.yaml"), "license": "test"}]}))
    return PipelineConfig.load(registry=tmp / "sources.yaml", data_root=tmp / "data", **overrides)


def trimmed_label(src: Path, values: dict, dst: Path) -> Path:
    """A copy of a real label volume keeping only ``values`` (so the label map can stay small)."""
    labels = sitk.ReadImage(str(src))
    keep = sitk.GetArrayFromImage(labels)
    keep[~np.isin(keep, list(values))] = 0
    out = sitk.GetImageFromArray(keep)
    out.CopyInformation(labels)
    sitk.WriteImage(out, str(dst))
    return dst


def regions_of(res, label: str, axis: str) -> list[dict]:
    sl = {s["image_id"]: s for s in res.slices.to_pylist()}
    return [dict(r, axis=sl[r["image_id"]]["axis"], index=sl[r["image_id"]]["index"])
            for r in res.regions.to_pylist() if r["raw_label"] == label and sl[r["image_id"]]["axis"] == axis]


def weighted_centroid(regs: list[dict]) -> np.ndarray:
    w = np.array([r["area_px"] for r in regs], float)
    return (np.array([r["centroid"] for r in regs]) * w[:, None]).sum(0) / w.sum()


@needs_shared
def test_liver_on_patient_right_and_flipped_copy_identical(tmp_path):
    """TotalSegmentator CT (RAS on disk) and a copy re-stored as LPI must give the same slices."""
    img = SHARED / "totalseg_ct_nifti" / "images" / "ct_sm.nii.gz"
    lab = SHARED / "totalseg_ct_nifti" / "labels" / "ct_sm.nii.gz"
    values = {1: "spleen", 5: "liver", 2: "kidney_right", 3: "kidney_left"}
    trimmed = sitk.ReadImage(str(trimmed_label(lab, values, tmp_path / "trim.nii.gz")))
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    a_dir.mkdir()
    b_dir.mkdir()
    sitk.WriteImage(sitk.ReadImage(str(img)), str(a_dir / "ct.nii.gz"))
    sitk.WriteImage(trimmed, str(a_dir / "lab.nii.gz"))
    # the flipped copy: same anatomy, voxels stored in another order (LPI) with a matching header
    sitk.WriteImage(sitk.DICOMOrient(sitk.ReadImage(str(img)), "LPI"), str(b_dir / "ct.nii.gz"))
    sitk.WriteImage(sitk.DICOMOrient(trimmed, "LPI"), str(b_dir / "lab.nii.gz"))
    res_a = run(one_volume_registry(tmp_path / "ra", a_dir / "ct.nii.gz", a_dir / "lab.nii.gz", values), "vol",
                tmp_path / "oa")
    res_b = run(one_volume_registry(tmp_path / "rb", b_dir / "ct.nii.gz", b_dir / "lab.nii.gz", values), "vol",
                tmp_path / "ob")
    sa, sb = res_a.slices.to_pylist(), res_b.slices.to_pylist()
    assert {s["original_orientation"] for s in sa} == {"RAS"} and {s["original_orientation"] for s in sb} == {"LPI"}
    assert {s["orientation"] for s in sa + sb} == {"LPS"}
    assert sorted((s["axis"], s["index"], s["sha256"]) for s in sa) == \
        sorted((s["axis"], s["index"], s["sha256"]) for s in sb)
    width = sa[0]["width"]
    liver, spleen = weighted_centroid(regions_of(res_a, "liver", "axial")), \
        weighted_centroid(regions_of(res_a, "spleen", "axial"))
    assert liver[0] < width / 2 < spleen[0]  # radiological display: patient right on the viewer's left
    k_r, k_l = weighted_centroid(regions_of(res_a, "kidney_right", "coronal")), \
        weighted_centroid(regions_of(res_a, "kidney_left", "coronal"))
    assert k_r[0] < k_l[0]


@needs_shared
def test_ct_window_applied_exactly(tmp_path):
    img = SHARED / "totalseg_ct_nifti" / "images" / "ct_sm.nii.gz"
    lab = SHARED / "totalseg_ct_nifti" / "labels" / "ct_sm.nii.gz"
    cfg = one_volume_registry(tmp_path, img, trimmed_label(lab, {5: "liver"}, tmp_path / "ct_sm.nii.gz"),
                              {5: "liver"}, standardize={"write_pngs": "all"})  # the full slice corpus
    res = run(cfg, "vol", tmp_path / "out")
    assert all(s["png_path"] for s in res.slices.to_pylist())
    s = next(s for s in res.slices.to_pylist() if s["axis"] == "axial")
    assert s["intensity_transform"] == "ct_window"
    params = yaml.safe_load(s["intensity_params"])
    assert (params["level"], params["width"], params["window"]) == (40, 400, "soft_tissue")
    hu = sitk.GetArrayFromImage(sitk.DICOMOrient(sitk.ReadImage(str(img)), "LPS"))[s["index"]].astype(np.float32)
    expected = np.clip(np.rint((hu - (-160)) * 255 / 400), 0, 255).astype(np.uint8)
    png = cv2.imread(str(tmp_path / "out" / s["png_path"]), cv2.IMREAD_GRAYSCALE)
    assert np.array_equal(png, expected)


@needs_shared
def test_mr_percentile_clipping_recorded(shared_config, tmp_path):
    res = run(shared_config, "pyradiomics_mr_nifti", tmp_path)
    params = {s["intensity_params"] for s in res.slices.to_pylist()}
    assert {s["intensity_transform"] for s in res.slices.to_pylist()} == {"percentile_clip"}
    assert len(params) == 3  # computed per volume (3 volumes)
    assert all('"p_high": 99.5' in p and '"p_low": 0.5' in p for p in params)


@needs_shared
def test_2d_component_counts_match_opencv(shared_config, tmp_path):
    res = run(shared_config, "kvasir_seg", tmp_path)
    floor = max(shared_config.standardize.min_region_pixels, 0)
    by_image = {}
    for r in res.regions.to_pylist():
        by_image.setdefault(r["source_path"], []).append(r)
    for path, regs in by_image.items():
        mask = cv2.imread(str(SHARED / "kvasir_seg_polyp_sample" / path.replace("images/", "masks/")),
                          cv2.IMREAD_GRAYSCALE) > 127
        n, lab, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
        h, w = mask.shape
        cut = max(floor, int(np.ceil(shared_config.standardize.min_region_fraction * w * h)))
        assert len(regs) == int((stats[1:, cv2.CC_STAT_AREA] >= cut).sum()), path
        for r in regs:  # RLE decodes to one of the components, with the recorded area
            m = decode_rle(r["mask_rle"], r["height"], r["width"])
            assert m.sum() == r["area_px"] and mask[m].all()


@needs_shared
def test_3d_components_match_direct_count(shared_config, tmp_path):
    """Instances per label = 3D components that survive on at least one slice (scipy, 26-connectivity)."""
    from scipy import ndimage
    res = run(shared_config, "pyradiomics_mr_nifti", tmp_path)
    lab = sitk.GetArrayFromImage(sitk.ReadImage(str(SHARED / "pyradiomics_mr_tumor" / "labels" / "brain1.nii.gz")))
    _, n = ndimage.label(lab == 1, structure=np.ones((3, 3, 3)))
    found = {r["component_index"] for r in res.regions.to_pylist() if r["source_path"] == "images/brain1.nii.gz"}
    assert 1 <= len(found) <= n and max(found) <= n


def test_small_mask_filter(demo_config, tmp_path):
    loose = run(demo_config, "demo_ct_abdomen", tmp_path / "a")
    strict_cfg = demo_config.model_copy(update={"standardize": demo_config.standardize.model_copy(
        update={"min_region_pixels": 200})})
    strict = run(strict_cfg, "demo_ct_abdomen", tmp_path / "b")
    assert strict.regions.num_rows < loose.regions.num_rows
    assert strict.dropped_small > loose.dropped_small
    assert loose.regions.num_rows + loose.dropped_small == strict.regions.num_rows + strict.dropped_small
    assert min(strict.regions.column("area_px").to_pylist()) >= 200


def test_grid_mismatch_after_ingest_is_quarantined(demo_config, tmp_path):
    src = load_registry(demo_config.registry).get("demo_ct_abdomen")
    samples = ingest(src, demo_config).samples
    root = tmp_path / "copy"
    shutil.copytree(src.root, root)
    lab = sitk.ReadImage(str(root / "labels" / "case_002.nii"))
    lab.SetSpacing((1.6, 1.5, 3.0))
    sitk.WriteImage(lab, str(root / "labels" / "case_002.nii"))
    from dataclasses import replace
    moved = replace(src, root=root)
    res = standardize_dataset(moved, demo_config, samples, tmp_path / "out")
    (q,) = res.quarantine.to_pylist()
    assert q["reason_code"] == "grid_mismatch" and q["stage"] == "standardize" and "spacing" in q["reason"]
    assert {r["source_path"] for r in res.slices.to_pylist()} == {"images/case_000.nii", "images/case_001.nii"}


def test_outputs_deterministic_and_worker_independent(demo_config, tmp_path):
    a = run(demo_config, "demo_ct_abdomen", tmp_path / "a")
    b = run(demo_config, "demo_ct_abdomen", tmp_path / "b", workers=2)
    assert a.slices.equals(b.slices) and a.regions.equals(b.regions)
    assert all(len(r["labels"]) == 1 for r in a.regions.to_pylist())
    names = a.slices.column("name").to_pylist()
    assert all(n.startswith("demo_ct_abdomen/case_") for n in names)


def test_every_region_inside_image_and_kinds(demo_config, tmp_path):
    kinds = {}
    for ds in ("demo_blood_smear", "demo_cxr_findings", "demo_polyp", "demo_mr_brain"):
        res = run(demo_config, ds, tmp_path / ds)
        for r in res.regions.to_pylist():
            x0, y0, x1, y1 = r["bbox"]
            assert 0 <= x0 < x1 <= r["width"] and 0 <= y0 < y1 <= r["height"]
            kinds.setdefault(ds, set()).add(r["kind"])
    assert kinds == {"demo_blood_smear": {"box"}, "demo_cxr_findings": {"image"}, "demo_polyp": {"mask"},
                     "demo_mr_brain": {"mask"}}


@needs_shared
def test_describe_records_display_geometry_phash_and_no_png(shared_config, tmp_path):
    """DICOM coronal planes (0.98 x 2.0 mm pixels) are described at square-pixel display size; nothing
    is written to disk; the pHash is the one ImageHash gives for the same 8-bit plane."""
    import imagehash
    from PIL import Image

    from pipelines.standardize.run import SamplePlanes
    src = load_registry(shared_config.registry).get("totalseg_ct_dicom")
    samples = ingest(src, shared_config).samples
    res = standardize_dataset(src, shared_config, samples, tmp_path / "out")
    assert not list((tmp_path / "out").rglob("*.png"))
    rows = res.slices.to_pylist()
    cor = next(s for s in rows if s["axis"] == "coronal")
    sx, sy = cor["spacing"]
    assert sy > 1.5 * sx  # thicker slices than pixels
    assert cor["display_width"] == cor["width"]
    assert abs(cor["display_height"] - cor["height"] * sy / sx) <= 1
    planes = SamplePlanes(samples.to_pylist()[0], src, shared_config)
    rgb = planes.rgb(cor)  # re-decoded and checked against the recorded sha256
    assert cor["phash"] == str(imagehash.phash(Image.fromarray(rgb).convert("L")))


@needs_shared
def test_phash_equals_imagehash_on_real_planes():
    """describe's pHash (two small matrix products) gives ImageHash's exact hash on every plane of a real CT
    in three windows."""
    import imagehash
    from PIL import Image

    from pipelines.standardize.display import phash_hex
    vol = sitk.GetArrayFromImage(sitk.ReadImage(str(SHARED / "totalseg_ct_nifti" / "images" / "ct_full.nii.gz")))
    planes = [vol[i] for i in range(vol.shape[0])] + [vol[:, i] for i in range(0, vol.shape[1], 3)]
    n = 0
    for arr in planes:
        for lo, hi in ((-160, 240), (-1350, 150), (-500, 1300)):
            g = np.clip(np.rint((arr.astype(np.float32) - lo) * 255 / (hi - lo)), 0, 255).astype(np.uint8)
            assert phash_hex(g) == str(imagehash.phash(Image.fromarray(g)))
            n += 1
    assert n > 400


def test_run_based_rle_equals_pycocotools():
    """The one-pass RLE of all instances equals pycocotools' per-mask encoding, edge cases included
    (an instance on the first and on the last pixel, a plane that is one instance)."""
    from pycocotools import mask as cocomask

    from pipelines.standardize.regions import rle_counts
    rng = np.random.default_rng(0)
    for t in range(60):
        h, w = rng.integers(10, 120, 2)
        p = rng.integers(0, 7, (h, w)).astype(np.int32)
        p[rng.random((h, w)) < 0.5] = 0
        if t % 5 == 0:
            p[:] = 0
            p[:3, :2], p[-1, -1], p[4:8, 4:8] = 3, 5, 6
        if t % 7 == 0:
            p[:] = 2
        ids = np.unique(p)
        ids = ids[ids > 0]
        for k, rle in zip(ids, rle_counts(p, ids)):
            assert rle == cocomask.encode(np.asfortranarray((p == k).astype(np.uint8)))["counts"].decode()


def test_window_lookup_equals_the_arithmetic_for_every_integer_type():
    """An 8/16-bit plane is mapped through one table per window and type (made once, shared read-only); every
    pixel equals the window's float32 arithmetic done on it directly: (v - low) * 255 / (high - low), rounded
    half to even and clipped, here re-derived per pixel for signed, unsigned and byte-swapped types, inverted or not."""
    from pipelines.standardize.intensity import Transform, _lookup
    rng = np.random.default_rng(3)
    for dtype in ("<i2", ">i2", "<u2", "u1", "i1"):
        info = np.iinfo(np.dtype(dtype))
        arr = rng.integers(info.min, info.max, (300, 400), endpoint=True).astype(dtype)
        for invert in (False, True):
            t = Transform("ct_window", {"low": -160.0, "high": 240.0, "invert": invert})
            got = t.apply_plane(arr)
            scaled = (arr.astype(np.float64).astype(np.float32) - np.float32(-160.0)) * np.float32(255.0 / 400.0)
            want = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
            want = 255 - want if invert else want
            assert got.dtype == np.uint8 and got.flags.c_contiguous and np.array_equal(got, want), (dtype, invert)
    table = _lookup(-160.0, 240.0, "<i2")
    assert table is _lookup(-160.0, 240.0, "<i2") and not table.flags.writeable


def test_grey_planes_become_three_equal_channels():
    """to_rgb: each channel of the result is the grey plane, pixel for pixel, for contiguous and strided planes;
    an RGB image passes as it is."""
    from pipelines.standardize.intensity import to_rgb
    rng = np.random.default_rng(8)
    grey = rng.integers(0, 256, (37, 53), dtype=np.uint8)
    for plane in (grey, grey[:, ::2], grey.T, np.zeros((0, 4), np.uint8)):
        rgb = to_rgb(plane)
        assert rgb.shape == (*plane.shape, 3) and rgb.dtype == np.uint8 and rgb.flags.c_contiguous
        for c in range(3):
            assert np.array_equal(rgb[:, :, c], plane)
    colour = rng.integers(0, 256, (5, 6, 3), dtype=np.uint8)
    assert to_rgb(colour) is colour


@needs_shared
def test_planes_shown_in_several_windows_are_each_windowed_from_the_volume(tmp_path):
    """Labels of three CT windows on one volume: every plane a window's labels lie on is cut once and shown in
    that window; each slice row's sha256 equals the window applied by hand to the plane cut from the reoriented
    HU volume (axial z, coronal y, sagittal x; the rows of the last two top to bottom), on every axis."""
    import hashlib
    img = SHARED / "totalseg_ct_nifti" / "images" / "ct_sm.nii.gz"
    lab = SHARED / "totalseg_ct_nifti" / "labels" / "ct_sm.nii.gz"
    values = {5: "liver", 30: "vertebrae_L2", 14: "lung_lower_lobe_right"}
    cfg = one_volume_registry(tmp_path, img, trimmed_label(lab, values, tmp_path / "ct_sm.nii.gz"), values)
    (tmp_path / "lm.yaml").write_text(yaml.safe_dump({"values": values, "labels": {
        "vertebrae_L2": {"ct_window": "bone"}, "lung_lower_lobe_right": {"ct_window": "lung"}}}))
    res = run(cfg, "vol", tmp_path / "out")
    hu = sitk.GetArrayFromImage(sitk.DICOMOrient(sitk.ReadImage(str(img)), "LPS")).astype(np.float32)
    cut = {"axial": lambda i: hu[i], "coronal": lambda i: hu[::-1, i, :], "sagittal": lambda i: hu[::-1, :, i]}
    rows = res.slices.to_pylist()
    seen = set()
    for s in rows:
        p = yaml.safe_load(s["intensity_params"])
        want = np.clip(np.rint((cut[s["axis"]](s["index"]) - p["low"]) * np.float32(255 / (p["high"] - p["low"]))),
                       0, 255).astype(np.uint8)
        assert hashlib.sha256(np.ascontiguousarray(want)).hexdigest() == s["sha256"], (s["axis"], s["index"], p)
        seen.add((s["axis"], p["window"]))
    assert {w for _, w in seen} == {"soft_tissue", "bone", "lung"}
    assert {a for a, _ in seen} == {"axial", "coronal", "sagittal"}
    both = {(s["axis"], s["index"]) for s in rows if "bone" in s["intensity_params"]} & \
        {(s["axis"], s["index"]) for s in rows if "soft_tissue" in s["intensity_params"]}
    assert both  # planes shown in two windows (the liver and L2 share axial planes): one row in each
