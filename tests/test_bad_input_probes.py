"""The probe corpus of issue 15, made at test time from copies of ../shared: each bad input is either
read correctly or ends as a quarantine row with its reason code, one row per bad box/annotation/line
where the fault is local, and nothing crashes the reader."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
import yaml
from PIL import Image

from pipelines.config import PipelineConfig
from pipelines.ingest import ingest
from pipelines.source import RegistryError
from pipelines.sources.registry import load_registry
from tests.conftest import SHARED, needs_shared

pytestmark = needs_shared
PNEUMONIA = SHARED / "pneumoniamnist_cxr_cls"
BCCD = SHARED / "bccd_blood_cell_detection"
BRAIN = SHARED / "pyradiomics_mr_tumor"
CT_DICOM = SHARED / "totalseg_ct_dicom"


def run(tmp: Path, entry: dict, label_map: dict, ds: str = "probe", **cfg) -> tuple:
    """Register one dataset, ingest it; (samples, {(source_path, reason_code)}, quarantine rows)."""
    lm = tmp / f"{ds}.yaml"
    lm.write_text(yaml.safe_dump(label_map))
    (tmp / "sources.yaml").write_text(yaml.safe_dump({"version": 1, "datasets": [
        {"id": ds, "license": "test", "label_map": str(lm), **entry}]}))
    config = PipelineConfig.load(registry=tmp / "sources.yaml", data_root=tmp / "data", **cfg)
    res = ingest(load_registry(config.registry).get(ds), config)
    rows = res.quarantine.to_pylist()
    rows = [r for r in rows if r["reason_code"] != "no_samples"]  # the follow-on of a whole-file fault
    return res.samples.to_pylist(), {(r["source_path"], r["reason_code"]) for r in rows}, rows


# -- CSV manifests --------------------------------------------------------------------------------

def csv_copy(tmp: Path, n: int = 6) -> tuple[Path, list[str]]:
    root = tmp / "cxr"
    (root / "test_png").mkdir(parents=True)
    lines = (PNEUMONIA / "test_labels.csv").read_text().splitlines()[: n + 1]
    for line in lines[1:]:
        shutil.copy(PNEUMONIA / "test_png" / line.split(",")[0], root / "test_png")
    return root, lines


CSV_ENTRY = {"format": "csv_manifest", "modality": "CXR", "dimension": 2, "task_type": "cls"}
CSV_MAP = {"values": {0: "normal", 1: "pneumonia"}, "context": "chest"}


def csv_entry(root: Path, **opts) -> dict:
    return {**CSV_ENTRY, "root": str(root), "options": {"file": "m.csv", "path_column": "filename",
                                                        "image_root": "test_png", "label_column": "label_name", **opts}}


def test_latin1_manifest_is_detected_and_encoding_option(tmp_path):
    root, lines = csv_copy(tmp_path)
    text = "\n".join([lines[0] + ",note"] + [f"{ln},radiograph réalisé à Besançon" for ln in lines[1:]]) + "\n"
    (root / "m.csv").write_bytes(text.encode("latin-1"))
    samples, bad, _ = run(tmp_path, csv_entry(root), CSV_MAP)
    assert len(samples) == 6 and not bad
    samples, bad, _ = run(tmp_path, csv_entry(root, encoding="cp1252"), CSV_MAP)
    assert len(samples) == 6 and not bad
    samples, bad, rows = run(tmp_path, csv_entry(root, encoding="ascii"), CSV_MAP)
    assert bad == {("m.csv", "corrupt_file")} and "'encoding' option" in rows[0]["reason"]


def test_ragged_and_empty_manifest(tmp_path):
    root, lines = csv_copy(tmp_path)
    (root / "m.csv").write_text("\n".join(lines[:3] + [lines[3] + ",extra,fields"] + lines[4:]) + "\n")
    samples, bad, _ = run(tmp_path, csv_entry(root), CSV_MAP)
    assert len(samples) == 5 and bad == {("m.csv:4", "bad_annotation")}
    (root / "m.csv").write_bytes(b"")
    samples, bad, rows = run(tmp_path, csv_entry(root), CSV_MAP)
    assert samples == [] and bad == {("m.csv", "bad_annotation")} and "is empty" in rows[0]["reason"]


# -- NPZ ------------------------------------------------------------------------------------------

@pytest.fixture()
def npz_arrays():
    with np.load(PNEUMONIA / "pneumoniamnist.npz") as npz:
        return npz["test_images"][:8], npz["test_labels"][:8]


NPZ_MAP = {"values": {0: "normal", 1: "pneumonia"}, "context": "chest"}


def npz_entry(root: Path) -> dict:
    return {"root": str(root), "format": "npz", "modality": "X-ray", "dimension": 2, "task_type": "cls",
            "options": {"file": "a.npz", "splits": ["test"]}}


@pytest.mark.parametrize("case, reason, kept", [
    ("no_labels", "bad_annotation", 0), ("truncated", "corrupt_file", 0), ("object_array", "corrupt_file", 0),
    ("short_labels", "bad_annotation", 5),
])
def test_npz_problems(tmp_path, npz_arrays, case, reason, kept):
    images, labels = npz_arrays
    root = tmp_path / "npz"
    root.mkdir()
    path = root / "a.npz"
    if case == "no_labels":
        np.savez(path, test_images=images)
    elif case == "truncated":
        np.savez(path, test_images=images, test_labels=labels)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif case == "object_array":
        np.savez(path, test_images=np.array([im for im in images] + [None], dtype=object), test_labels=labels)
    else:
        np.savez(path, test_images=images, test_labels=labels[:5])
    samples, bad, _ = run(tmp_path, npz_entry(root), NPZ_MAP)
    assert len(samples) == kept
    assert {r for _, r in bad} - {"no_samples"} == {reason}


# -- MSD dataset.json -----------------------------------------------------------------------------

@pytest.mark.parametrize("doc, expected", [
    ("{not json", {("dataset.json", "bad_annotation")}),
    (json.dumps({"labels": ["background", "tumor"]}), {("dataset.json", "bad_annotation")}),
    (json.dumps({"labels": {"0": "background", "1": "tumor"}}), {("dataset.json", "bad_annotation")}),
    (json.dumps({"labels": {"0": "background", "1": "tumor"},
                 "training": [{"image": "./imagesTr/brain1.nii.gz", "label": "./labelsTr/brain1.nii.gz"},
                              {"image": "./imagesTr/x.nii.gz"}]}), {("dataset.json#training[1]", "bad_annotation")}),
])
def test_malformed_msd_dataset_json(tmp_path, doc, expected):
    root = tmp_path / "msd"
    for sub, src in (("imagesTr", "images"), ("labelsTr", "labels")):
        (root / sub).mkdir(parents=True)
        shutil.copy(BRAIN / src / "brain1.nii.gz", root / sub)
    (root / "dataset.json").write_text(doc)
    samples, bad, _ = run(tmp_path, {"root": str(root), "format": "msd", "modality": "MR", "dimension": 3,
                                     "task_type": "seg"}, {"values": {1: "tumor"}})
    assert {b for b in bad if b[1] != "no_samples"} == expected
    assert len(samples) == (1 if "training" in doc else 0)


def test_ct_window_typo_in_label_map_is_a_registry_error(tmp_path):
    root, _ = csv_copy(tmp_path, 1)
    with pytest.raises(RegistryError, match="unknown ct_window 'lungs'.*fix:"):
        run(tmp_path, csv_entry(root), {**CSV_MAP, "labels": {"pneumonia": {"ct_window": "lungs"}}})


# -- NIfTI geometry and pixel types --------------------------------------------------------------

def nifti_pair(tmp: Path) -> Path:
    root = tmp / "vol"
    for sub in ("images", "labels"):
        (root / sub).mkdir(parents=True)
        shutil.copy(BRAIN / sub / "brain1.nii.gz", root / sub)
    return root


def _rewrite(path: Path, edit) -> None:
    img = nib.load(str(path))
    out = nib.Nifti1Image(np.asanyarray(img.dataobj), img.affine, img.header.copy())
    edit(out.header)
    nib.save(out, str(path))


VOL_MAP = {"values": {1: "tumor"}}


def vol_entry(root: Path) -> dict:
    return {"root": str(root), "format": "volume_pairs", "modality": "MRI", "dimension": 3, "task_type": "seg"}


@pytest.mark.parametrize("axis, factor", [(1, -1.0), (3, 0.0)])
def test_nifti_bad_pixdim_is_quarantined_not_guessed(tmp_path, axis, factor):
    root = nifti_pair(tmp_path)
    samples, bad, _ = run(tmp_path, vol_entry(root), VOL_MAP)
    assert len(samples) == 1 and not bad  # the untouched copy reads

    def edit(h):
        h["pixdim"][axis] *= factor
    _rewrite(root / "images" / "brain1.nii.gz", edit)
    samples, bad, rows = run(tmp_path, vol_entry(root), VOL_MAP)
    assert ("images/brain1.nii.gz", "bad_geometry") in bad and "sform" in rows[0]["reason"]


def test_rgb_nifti_and_nan_float_image_get_rows(tmp_path):
    root = nifti_pair(tmp_path)
    grey = sitk.ReadImage(str(root / "images" / "brain1.nii.gz"), sitk.sitkUInt8)
    sitk.WriteImage(sitk.Compose(grey, grey, grey), str(root / "images" / "brain1.nii.gz"))
    samples, bad, _ = run(tmp_path, vol_entry(root), VOL_MAP)
    assert ("images/brain1.nii.gz", "unsupported_pixel_type") in bad
    folder = tmp_path / "folder" / "normal"
    folder.mkdir(parents=True)
    arr = np.asarray(Image.open(PNEUMONIA / "test_png" / "test_0001.png"), np.float32)
    Image.fromarray(arr).save(folder / "ok.tiff")
    arr[3, 3] = np.nan
    Image.fromarray(arr).save(folder / "nan.tiff")
    samples, bad, _ = run(tmp_path, {"root": str(tmp_path / "folder"), "format": "image_folder", "modality": "X-ray",
                                     "dimension": 2, "task_type": "cls"}, {"labels": {"normal": None}})
    assert len(samples) == 1 and bad == {("normal/nan.tiff", "non_finite_values")}


# -- DICOM series ---------------------------------------------------------------------------------

def dicom_copy(tmp: Path) -> tuple[Path, list[Path]]:
    root = tmp / "dcm"
    shutil.copytree(CT_DICOM, root, ignore=shutil.ignore_patterns("SHA256SUMS", "SOURCE.txt"))
    return root, sorted((root / "dicom").glob("*.dcm"))


def dicom_entry(root: Path) -> dict:
    return {"root": str(root), "format": "dicom_series", "modality": "CT", "dimension": 3, "task_type": "seg",
            "options": {"label": "labels/example_seg_dicom.nii.gz"}}


def dicom_map() -> dict:
    return yaml.safe_load((Path(__file__).parent / "shared_registry" / "label_maps" / "totalseg.yaml").read_text())


def test_dicom_missing_slice_and_mixed_orientation(tmp_path):
    root, files = dicom_copy(tmp_path)
    by_pos = sorted(files, key=lambda f: float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]))
    by_pos[len(by_pos) // 2].unlink()
    samples, bad, rows = run(tmp_path, dicom_entry(root), dicom_map())
    assert samples == [] and {r for _, r in bad} == {"bad_geometry"} and "missing" in rows[0]["reason"]
    root2, files2 = dicom_copy(tmp_path / "b")
    for k, f in enumerate(files2):  # one series by UID (this copy's UIDs were emptied), one slice turned
        ds = pydicom.dcmread(f)
        ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.1"
        if k == 3:
            ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
        ds.save_as(f)
    samples, bad, rows = run(tmp_path / "b", dicom_entry(root2), dicom_map())
    assert samples == [] and {r for _, r in bad} == {"bad_geometry"} and "orientations" in rows[0]["reason"]


def test_dicom_without_preamble_is_read(tmp_path):
    root, files = dicom_copy(tmp_path)
    reference, _, _ = run(tmp_path, dicom_entry(root), dicom_map())
    for f in files:
        f.write_bytes(f.read_bytes()[132:])  # drop the 128-byte preamble and 'DICM'
    (root / "dicom" / "junk.dcm").write_bytes(b"\x00" * 64 + b"not dicom at all" * 8)
    samples, bad, _ = run(tmp_path, dicom_entry(root), dicom_map())
    assert len(samples) == 1 and samples[0]["spacing"] == reference[0]["spacing"]
    assert samples[0]["label_values"] == reference[0]["label_values"]
    assert bad == {("dicom/junk.dcm", "corrupt_file")}


# -- detection: COCO and YOLO ---------------------------------------------------------------------

def bccd_boxes(n: int) -> list[tuple[str, int, int, list[tuple[str, float, float, float, float]]]]:
    out = []
    for xml in sorted((BCCD / "Annotations").glob("*.xml"))[:n]:
        t = ET.parse(xml).getroot()
        boxes = []
        for obj in t.iter("object"):
            b = obj.find("bndbox")
            boxes.append((obj.findtext("name"), float(b.findtext("xmin")) - 1, float(b.findtext("ymin")) - 1,
                          float(b.findtext("xmax")), float(b.findtext("ymax"))))
        out.append((xml.stem, int(t.findtext("size/width")), int(t.findtext("size/height")), boxes))
    return out


CLASSES = ["RBC", "WBC", "Platelets"]
DET_MAP = {"labels": {c: None for c in CLASSES}}


def coco_copy(tmp: Path, n: int = 5) -> tuple[Path, dict]:
    root = tmp / "coco"
    (root / "images").mkdir(parents=True)
    doc = {"images": [], "annotations": [], "categories": [{"id": i + 1, "name": c} for i, c in enumerate(CLASSES)]}
    for k, (stem, w, h, boxes) in enumerate(bccd_boxes(n)):
        shutil.copy(BCCD / "JPEGImages" / f"{stem}.jpg", root / "images")
        doc["images"].append({"id": k + 1, "file_name": f"{stem}.jpg", "width": w, "height": h})
        for name, x0, y0, x1, y1 in boxes:
            if x1 - x0 >= 2 and y1 - y0 >= 2:
                doc["annotations"].append({"id": len(doc["annotations"]) + 1, "image_id": k + 1,
                                           "category_id": CLASSES.index(name) + 1, "bbox": [x0, y0, x1 - x0, y1 - y0]})
    return root, doc


def coco_run(tmp: Path, root: Path, doc: dict):
    (root / "ann.json").write_text(json.dumps(doc))
    return run(tmp, {"root": str(root), "format": "coco", "modality": "Microscopy", "dimension": 2,
                     "task_type": "det", "options": {"file": "ann.json", "image_root": "images"}}, DET_MAP)


def test_coco_faults_are_local(tmp_path):
    root, doc = coco_copy(tmp_path)
    samples, bad, _ = coco_run(tmp_path, root, doc)
    total = sum(len(s["boxes"]) for s in samples)
    assert len(samples) == 5 and not bad
    doc["annotations"][0]["category_id"] = 99          # unknown category
    doc["annotations"][1]["bbox"] = ["x", 1, 2, 3]     # malformed bbox
    doc["annotations"][2]["bbox"] = [float("nan"), 1, 20, 20]  # NaN box
    doc["annotations"].append({"id": 999, "image_id": 4242, "category_id": 1, "bbox": [1, 1, 10, 10]})
    samples, bad, _ = coco_run(tmp_path, root, doc)
    assert len(samples) == 5 and sum(len(s["boxes"]) for s in samples) == total - 3
    assert {p for p, _ in bad} >= {"ann.json#annotations[0]", "ann.json#annotations[1]",
                                   f"ann.json#annotations[{len(doc['annotations']) - 1}]"}
    assert {r for _, r in bad} == {"bad_annotation"} and len(bad) == 4


def test_coco_duplicate_image_id_and_symlink_escape(tmp_path):
    root, doc = coco_copy(tmp_path)
    doc["images"][1]["id"] = doc["images"][0]["id"]
    outside = tmp_path / "elsewhere.jpg"
    shutil.copy(root / "images" / doc["images"][2]["file_name"], outside)
    (root / "images" / doc["images"][2]["file_name"]).unlink()
    (root / "images" / doc["images"][2]["file_name"]).symlink_to(outside)
    samples, bad, _ = coco_run(tmp_path, root, doc)
    dup = {f"images/{doc['images'][i]['file_name']}" for i in (0, 1)}
    assert {(p, r) for p, r in bad if p in dup} == {(p, "bad_annotation") for p in dup}
    assert (f"images/{doc['images'][2]['file_name']}", "path_traversal") in bad
    assert len(samples) == 2


def yolo_copy(tmp: Path, n: int = 4) -> tuple[Path, int]:
    root = tmp / "yolo"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    total = 0
    for stem, w, h, boxes in bccd_boxes(n):
        shutil.copy(BCCD / "JPEGImages" / f"{stem}.jpg", root / "images")
        lines = [f"{CLASSES.index(c)} {(x0 + x1) / 2 / w:.6f} {(y0 + y1) / 2 / h:.6f} {(x1 - x0) / w:.6f} "
                 f"{(y1 - y0) / h:.6f}" for c, x0, y0, x1, y1 in boxes if x1 - x0 >= 2 and y1 - y0 >= 2]
        total += len(lines)
        (root / "labels" / f"{stem}.txt").write_text("\n".join(lines) + "\n")
    return root, total


def yolo_run(tmp: Path, root: Path):
    return run(tmp, {"root": str(root), "format": "yolo", "modality": "Microscopy", "dimension": 2,
                     "task_type": "det"}, DET_MAP)


def test_yolo_bom_class_minus_one_and_nan_box(tmp_path):
    root, total = yolo_copy(tmp_path)
    (root / "classes.txt").write_bytes(("\n".join(CLASSES) + "\n").encode("utf-8-sig"))
    samples, bad, _ = yolo_run(tmp_path, root)
    assert sum(len(s["boxes"]) for s in samples) == total and not bad  # the BOM is not part of 'RBC'
    first = sorted((root / "labels").glob("*.txt"))[0]
    lines = first.read_text().splitlines()
    lines[0] = "-1 " + lines[0].split(" ", 1)[1]
    lines[1] = "0 nan 0.5 0.1 0.1"
    first.write_text("\n".join(lines) + "\n")
    samples, bad, rows = yolo_run(tmp_path, root)
    assert len(samples) == 4 and sum(len(s["boxes"]) for s in samples) == total - 2
    assert (f"labels/{first.name}:1", "bad_annotation") in bad and len(rows) == 2
    assert not any(b["label"] == "Platelets" and b["x0"] != b["x0"] for s in samples for b in s["boxes"])
