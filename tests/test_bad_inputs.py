"""A corpus of bad inputs, made in the test from real files: each is quarantined with its exact
reason, and no good sample of the same dataset is lost."""

from __future__ import annotations

import gzip
import json
import shutil
import struct
import zlib
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import yaml

from pipelines.config import PipelineConfig
from pipelines.ingest import ingest
from pipelines.sources.registry import load_registry


def make_registry(tmp: Path, **entries: dict) -> PipelineConfig:
    docs = []
    for ds, e in entries.items():
        lm = tmp / f"{ds}.yaml"
        lm.write_text(yaml.safe_dump(e.pop("label_map_doc")))
        docs.append({"id": ds, "license": "test", "label_map": str(lm), **e})
    path = tmp / "sources.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "datasets": docs}))
    return PipelineConfig.load(registry=path, data_root=tmp / "data")


def reasons(cfg: PipelineConfig, ds: str):
    res = ingest(load_registry(cfg.registry).get(ds), cfg)
    return res, {(r["source_path"], r["reason_code"]) for r in res.quarantine.to_pylist()}


def png_with_declared_size(path: Path, w: int, h: int) -> None:
    """A PNG whose header declares w x h pixels (the decompression-bomb case)."""
    ok, buf = cv2.imencode(".png", np.zeros((4, 4), np.uint8))
    data = bytearray(buf.tobytes())
    ihdr = struct.pack(">II", w, h) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))


@pytest.fixture()
def seg2d(tmp_path, demo_sources):
    """The demo polyp dataset plus bad image/mask pairs."""
    root = tmp_path / "polyp"
    shutil.copytree(demo_sources / "polyp_phantom", root)
    good = sorted(p.name for p in (root / "images").iterdir())
    img = cv2.imread(str(root / "images" / good[0]))
    # truncated PNG
    data = (root / "images" / good[0]).read_bytes()
    (root / "images" / "truncated.png").write_bytes(data[: len(data) // 2])
    (root / "masks" / "truncated.png").write_bytes((root / "masks" / good[0]).read_bytes())
    # mask of another size
    cv2.imwrite(str(root / "images" / "mismatch.png"), img)
    cv2.imwrite(str(root / "masks" / "mismatch.png"), np.zeros((10, 10), np.uint8) + 255)
    # empty mask
    cv2.imwrite(str(root / "images" / "empty.png"), img)
    cv2.imwrite(str(root / "masks" / "empty.png"), np.zeros(img.shape[:2], np.uint8))
    # missing mask
    cv2.imwrite(str(root / "images" / "nomask.png"), img)
    # absurd declared size
    png_with_declared_size(root / "images" / "bomb.png", 100_000, 100_000)
    cfg = make_registry(tmp_path, polyp={
        "root": str(root), "format": "mask_pairs", "modality": "Endoscopy", "dimension": 2, "task_type": "seg",
        "options": {"mode": "binary"}, "label_map_doc": {"values": {1: "polyp"}}})
    return cfg, good


@pytest.mark.parametrize("pillow_limit", [None, 1e9])
def test_2d_bad_pairs(seg2d, pillow_limit, monkeypatch):
    """Also with Pillow's own pixel limit set again, as importing VLMEvalKit or lmms-eval does (1e9): the bomb is
    quarantined, not raised."""
    from PIL import Image
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", pillow_limit)
    cfg, good = seg2d
    res, got = reasons(cfg, "polyp")
    assert got == {
        ("images/truncated.png", "corrupt_file"),
        ("images/mismatch.png", "grid_mismatch"),
        ("masks/empty.png", "empty_mask"),
        ("masks/nomask.png", "missing_file"),
        ("images/bomb.png", "too_many_pixels"),
    }
    assert sorted(res.samples.column("source_path").to_pylist()) == [f"images/{g}" for g in good]


def test_detection_bad_annotations(tmp_path, demo_sources):
    root = tmp_path / "cells"
    shutil.copytree(demo_sources / "blood_smear_phantom", root)
    doc = json.loads((root / "annotations.json").read_text())
    n_good = len(doc["images"])
    doc["images"] += [{"id": 901, "file_name": "../../etc/passwd", "width": 5, "height": 5},
                      {"id": 902, "file_name": "gone.png", "width": 5, "height": 5}]
    first = doc["images"][0]["id"]
    doc["annotations"] += [
        {"id": 9001, "image_id": first, "category_id": 1, "bbox": [190, 150, 40, 40]},  # outside 200x160
        {"id": 9002, "image_id": first, "category_id": 99, "bbox": [10, 10, 5, 5]},
    ]
    doc["categories"].append({"id": 99, "name": "alien cell"})
    (root / "annotations.json").write_text(json.dumps(doc))
    cfg = make_registry(tmp_path, cells={
        "root": str(root), "format": "coco", "modality": "Microscopy", "dimension": 2, "task_type": "det",
        "options": {"file": "annotations.json", "image_root": "images"},
        "label_map_doc": {"labels": {"red blood cell": None, "white blood cell": None, "platelet": None}}})
    res, got = reasons(cfg, "cells")
    codes = sorted(code for _, code in got)
    assert codes == ["box_outside_image", "missing_file", "path_traversal", "unknown_label"]
    assert res.samples.num_rows == n_good


def test_csv_duplicates_and_unknown_labels(tmp_path, demo_sources):
    root = tmp_path / "cxr"
    shutil.copytree(demo_sources / "cxr_findings_phantom", root)
    lines = (root / "manifest.csv").read_text().splitlines()
    n_good = len(lines) - 1
    lines += [lines[1], "cxr_00.png,pneumothorax,P999"]
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    cfg = make_registry(tmp_path, cxr={
        "root": str(root), "format": "csv_manifest", "modality": "X-ray", "dimension": 2, "task_type": "mcls",
        "group_rule": {"kind": "csv_column", "column": "patient"},
        "options": {"file": "manifest.csv", "image_root": "images", "label_column": "findings",
                    "label_separator": ";"},
        "label_map_doc": {"labels": {"cardiomegaly": None, "pleural effusion": None, "consolidation": None}}})
    res, got = reasons(cfg, "cxr")
    assert sorted(code for _, code in got) == ["duplicate_sample", "unknown_label"]
    assert res.samples.num_rows == n_good
    assert len(set(res.samples.column("group_id").to_pylist())) == n_good // 2  # two images per patient


@pytest.fixture()
def volumes(tmp_path, demo_sources):
    root = tmp_path / "ct"
    shutil.copytree(demo_sources / "ct_abdomen_phantom", root)
    img = sitk.ReadImage(str(root / "images" / "case_000.nii"))
    lab = sitk.ReadImage(str(root / "labels" / "case_000.nii"))
    # truncated gzip NIfTI
    raw = gzip.compress((root / "images" / "case_000.nii").read_bytes(), mtime=0)
    (root / "images" / "trunc.nii.gz").write_bytes(raw[: len(raw) // 3])
    shutil.copy(root / "labels" / "case_000.nii", root / "labels" / "trunc.nii.gz")
    # gzip NIfTI whose deflate stream is damaged past the header (the header reads, the voxels do not)
    flipped = bytearray(raw)
    flipped[len(raw) // 2:len(raw) // 2 + 64] = bytes(64)
    (root / "images" / "flipped.nii.gz").write_bytes(bytes(flipped))
    shutil.copy(root / "labels" / "case_000.nii", root / "labels" / "flipped.nii.gz")
    # truncated gzip NIfTI with value scaling: ITK reads it whole (scaled), after nibabel streamed it once
    scaled = nib.Nifti1Image(np.asarray(nib.load(str(root / "images" / "case_000.nii")).dataobj).astype(np.int16),
                             nib.load(str(root / "images" / "case_000.nii")).affine)
    scaled.header.set_slope_inter(2.0, -1024.0)
    packed = gzip.compress(scaled.to_bytes(), mtime=0)
    (root / "images" / "scaled_trunc.nii.gz").write_bytes(packed[: len(packed) // 2])
    shutil.copy(root / "labels" / "case_000.nii", root / "labels" / "scaled_trunc.nii.gz")
    # corrupt header
    bad = bytearray((root / "images" / "case_000.nii").read_bytes())
    bad[0:4] = b"\x00\x00\x00\x00"
    bad[344:348] = b"XXXX"
    (root / "images" / "badheader.nii").write_bytes(bytes(bad))
    shutil.copy(root / "labels" / "case_000.nii", root / "labels" / "badheader.nii")
    # shifted label geometry
    shifted = sitk.Image(lab)
    shifted.SetOrigin(tuple(o + 15.0 for o in lab.GetOrigin()))
    sitk.WriteImage(img, str(root / "images" / "shifted.nii"))
    sitk.WriteImage(shifted, str(root / "labels" / "shifted.nii"))
    # NaN voxels
    arr = sitk.GetArrayFromImage(img).astype(np.float32)
    arr[3, 4, 5] = np.nan
    nan_img = sitk.GetImageFromArray(arr)
    nan_img.CopyInformation(img)
    sitk.WriteImage(nan_img, str(root / "images" / "nan.nii"))
    sitk.WriteImage(lab, str(root / "labels" / "nan.nii"))
    # empty label and unknown label value
    zero = sitk.Image(lab) * 0
    sitk.WriteImage(img, str(root / "images" / "empty.nii"))
    sitk.WriteImage(zero, str(root / "labels" / "empty.nii"))
    sitk.WriteImage(img, str(root / "images" / "unknown.nii"))
    sitk.WriteImage(lab + 40 * (lab == 1), str(root / "labels" / "unknown.nii"))
    cfg = make_registry(tmp_path, ct={
        "root": str(root), "format": "volume_pairs", "modality": "CT", "dimension": 3, "task_type": "seg",
        "label_map_doc": {"values": {1: "liver", 2: "spleen", 3: "left kidney", 4: "right kidney",
                                     5: "liver tumor", 6: "vertebral column"}}})
    return cfg


def test_volume_bad_inputs(volumes):
    res, got = reasons(volumes, "ct")
    assert got == {
        ("images/trunc.nii.gz", "corrupt_file"),
        ("images/flipped.nii.gz", "corrupt_file"),
        ("images/scaled_trunc.nii.gz", "corrupt_file"),
        ("images/badheader.nii", "corrupt_file"),
        ("images/shifted.nii", "grid_mismatch"),
        ("images/nan.nii", "non_finite_values"),
        ("labels/empty.nii", "empty_mask"),
        ("labels/unknown.nii", "unknown_label"),
    }
    assert sorted(res.samples.column("name").to_pylist()) == ["case_000", "case_001", "case_002"]


def test_volume_pairs_checked_in_worker_processes_give_the_same_tables(volumes):
    """ingest.workers > 1 checks the pairs in other processes: the same samples and the same quarantine rows."""
    from pipelines.ingest import ingest
    from pipelines.sources.registry import load_registry
    source = load_registry(volumes.registry).get("ct")
    one = ingest(source, volumes)
    two = ingest(source, volumes.model_copy(update={"ingest": volumes.ingest.model_copy(update={"workers": 2})}))
    assert one.samples.num_rows == 3 and one.quarantine.num_rows == 8
    assert one.samples.equals(two.samples) and one.quarantine.equals(two.quarantine)


def test_dicom_bad_inputs(tmp_path):
    """A truncated DICOM file, a header-corrupted one, and a SEG whose images are missing."""
    from pydicom.data import get_testdata_file

    from tests.conftest import HAVE_SHARED, SHARED
    root = tmp_path / "dcm"
    (root / "series").mkdir(parents=True)
    shutil.copy(get_testdata_file("CT_small.dcm"), root / "series" / "ct.dcm")
    shutil.copy(get_testdata_file("MR_truncated.dcm"), root / "series" / "mr_truncated.dcm")
    (root / "series" / "garbage.dcm").write_bytes(b"DICM" * 40)
    cfg = make_registry(tmp_path, dcm={
        "root": str(root), "format": "dicom_series", "modality": "CT", "dimension": 3, "task_type": "seg",
        "label_map_doc": {"labels": {}}})
    res, got = reasons(cfg, "dcm")
    assert ("series/garbage.dcm", "corrupt_file") in got
    assert ("series/mr_truncated.dcm", "corrupt_file") in got
    assert res.samples.num_rows == 1  # the good CT slice still flows
    if HAVE_SHARED:
        seg_root = tmp_path / "seg"
        seg_root.mkdir()
        shutil.copy(SHARED / "dcmqi_ct_liver_seg" / "seg" / "liver_seg.dcm", seg_root / "liver_seg.dcm")
        shutil.copy(SHARED / "dcmqi_ct_liver_seg" / "dicom" / "01.dcm", seg_root / "01.dcm")
        cfg = make_registry(tmp_path, seg={
            "root": str(seg_root), "format": "dicom_seg", "modality": "CT", "dimension": 3, "task_type": "seg",
            "label_map_doc": {"labels": {"Liver": None}}})
        res, got = reasons(cfg, "seg")
        assert sorted(code for _, code in got) == ["no_samples", "referenced_images_missing"]
        assert ("liver_seg.dcm", "referenced_images_missing") in got
