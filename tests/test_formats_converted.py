"""Formats without a sample of their own in ../shared, tested on real data converted in the test:
YOLO (from BCCD's VOC boxes), MSD and nnU-Net layouts (from TotalSegmentator / pyradiomics
NIfTI), MHA (from pyradiomics NRRD), TSV manifests with 0/1 label columns."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET

import SimpleITK as sitk
import yaml

from pipelines.config import PipelineConfig
from pipelines.ingest import ingest
from pipelines.sources.registry import load_registry
from tests.conftest import SHARED, needs_shared

pytestmark = needs_shared


def registry(tmp, **entries) -> PipelineConfig:
    docs = []
    for ds, e in entries.items():
        lm = tmp / f"{ds}.yaml"
        lm.write_text(yaml.safe_dump(e.pop("label_map_doc")))
        docs.append({"id": ds, "license": "test", "label_map": str(lm), **e})
    (tmp / "sources.yaml").write_text(yaml.safe_dump({"version": 1, "datasets": docs}))
    return PipelineConfig.load(registry=tmp / "sources.yaml", data_root=tmp / "data")


def run(cfg, ds):
    return ingest(load_registry(cfg.registry).get(ds), cfg)


def test_yolo_from_bccd(tmp_path):
    root = tmp_path / "yolo"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    classes = ["RBC", "WBC", "Platelets"]
    (root / "classes.txt").write_text("\n".join(classes) + "\n")
    voc = SHARED / "bccd_blood_cell_detection"
    n_boxes = 0
    for xml in sorted((voc / "Annotations").glob("*.xml"))[:12]:
        tree = ET.parse(xml).getroot()
        w, h = int(tree.findtext("size/width")), int(tree.findtext("size/height"))
        lines = []
        for obj in tree.iter("object"):
            b = obj.find("bndbox")
            x0, y0 = float(b.findtext("xmin")) - 1, float(b.findtext("ymin")) - 1
            x1, y1 = float(b.findtext("xmax")), float(b.findtext("ymax"))
            lines.append(f"{classes.index(obj.findtext('name'))} {(x0 + x1) / 2 / w:.6f} {(y0 + y1) / 2 / h:.6f} "
                         f"{(x1 - x0) / w:.6f} {(y1 - y0) / h:.6f}")
            n_boxes += 1
        shutil.copy(voc / "JPEGImages" / f"{xml.stem}.jpg", root / "images")
        (root / "labels" / f"{xml.stem}.txt").write_text("\n".join(lines) + "\n")
    cfg = registry(tmp_path, yolo={"root": str(root), "format": "yolo", "modality": "Microscopy", "dimension": 2,
                                   "task_type": "det", "label_map_doc": {"labels": {c: None for c in classes}}})
    res = run(cfg, "yolo")
    assert res.samples.num_rows == 12 and res.quarantine.num_rows == 0
    assert sum(len(b) for b in res.samples.column("boxes").to_pylist()) == n_boxes
    from tests.conftest import SHARED_REGISTRY
    voc_rows = {r["name"]: r for r in run(PipelineConfig.load(registry=SHARED_REGISTRY), "bccd_voc").samples.to_pylist()}
    def rounded(boxes):
        return sorted((b["label"], round(b["x0"]), round(b["y0"]), round(b["x1"]), round(b["y1"])) for b in boxes)
    for row in res.samples.to_pylist():  # the same pixel boxes as the VOC reader, up to float rounding
        assert rounded(row["boxes"]) == rounded(voc_rows[row["name"]]["boxes"])


def test_msd_and_nnunet_layouts(tmp_path):
    src = SHARED / "pyradiomics_mr_tumor"
    msd = tmp_path / "Task01_BrainTumour"
    (msd / "imagesTr").mkdir(parents=True)
    (msd / "labelsTr").mkdir()
    nnu = tmp_path / "Dataset001_Tumour"
    (nnu / "imagesTr").mkdir(parents=True)
    (nnu / "labelsTr").mkdir()
    training = []
    for case in ("brain1", "brain2", "breast1"):
        shutil.copy(src / "images" / f"{case}.nii.gz", msd / "imagesTr" / f"{case}.nii.gz")
        shutil.copy(src / "labels" / f"{case}.nii.gz", msd / "labelsTr" / f"{case}.nii.gz")
        training.append({"image": f"./imagesTr/{case}.nii.gz", "label": f"./labelsTr/{case}.nii.gz"})
        shutil.copy(src / "images" / f"{case}.nii.gz", nnu / "imagesTr" / f"{case}_0000.nii.gz")
        shutil.copy(src / "labels" / f"{case}.nii.gz", nnu / "labelsTr" / f"{case}.nii.gz")
    (msd / "dataset.json").write_text(json.dumps({"labels": {"0": "background", "1": "tumor"},
                                                   "modality": {"0": "MRI"}, "training": training}))
    (nnu / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "tumor": 1},
                                                   "channel_names": {"0": "MRI"}, "file_ending": ".nii.gz"}))
    common = {"modality": "MRI", "dimension": 3, "task_type": "seg", "label_map_doc": {"values": {1: "tumor"}}}
    cfg = registry(tmp_path, msd={"root": str(msd), "format": "msd", **common},
                   nnu={"root": str(nnu), "format": "nnunet", **dict(common, label_map_doc={"values": {1: "tumor"}})})
    for ds in ("msd", "nnu"):
        res = run(cfg, ds)
        assert sorted(res.samples.column("name").to_pylist()) == ["brain1", "brain2", "breast1"], ds
        assert res.quarantine.num_rows == 0
    # a dataset.json that disagrees with the label map is reported, not guessed
    (msd / "dataset.json").write_text(json.dumps({"labels": {"0": "background", "1": "edema"}, "training": training}))
    res = run(cfg, "msd")
    assert res.samples.num_rows == 0 and "unknown_label" in res.reason_counts


def test_mha_pairs(tmp_path):
    root = tmp_path / "mha"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for case in ("brain1", "brain2"):
        sitk.WriteImage(sitk.ReadImage(str(SHARED / "pyradiomics_mr_tumor" / "nrrd" / f"{case}_image.nrrd")),
                        str(root / "images" / f"{case}.mha"))
        sitk.WriteImage(sitk.ReadImage(str(SHARED / "pyradiomics_mr_tumor" / "nrrd" / f"{case}_label.nrrd")),
                        str(root / "labels" / f"{case}.mha"))
    cfg = registry(tmp_path, mha={"root": str(root), "format": "volume_pairs", "modality": "MRI", "dimension": 3,
                                  "task_type": "seg", "label_map_doc": {"values": {1: "tumor"}}})
    res = run(cfg, "mha")
    rows = {r["name"]: r for r in res.samples.to_pylist()}
    assert set(rows) == {"brain1", "brain2"} and rows["brain1"]["shape"] == [256, 256, 25]


def test_tsv_manifest_with_label_columns(tmp_path):
    src = SHARED / "pneumoniamnist_cxr_cls"
    lines = (src / "test_labels.csv").read_text().splitlines()[1:41]
    tsv = ["file\tnormal\tpneumonia\tpatient"]
    for i, line in enumerate(lines):
        name, value, _ = line.split(",")
        tsv.append(f"{name}\t{1 - int(value)}\t{value}\tp{i // 4}")
    (tmp_path / "m.tsv").write_text("\n".join(tsv) + "\n")
    root = tmp_path / "cls"
    shutil.copytree(src / "test_png", root / "png")
    shutil.copy(tmp_path / "m.tsv", root / "m.tsv")
    cfg = registry(tmp_path, tsv={
        "root": str(root), "format": "csv_manifest", "modality": "X-ray", "dimension": 2, "task_type": "mcls",
        "group_rule": {"kind": "csv_column", "column": "patient"},
        "options": {"file": "m.tsv", "path_column": "file", "image_root": "png", "label_columns": ["normal", "pneumonia"]},
        "label_map_doc": {"labels": {"normal": None, "pneumonia": None}}})
    res = run(cfg, "tsv")
    assert res.samples.num_rows == 40
    assert len(set(res.samples.column("group_id").to_pylist())) == 10
    assert all(len(labels) == 1 for labels in res.samples.column("labels").to_pylist())
