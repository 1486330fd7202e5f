"""The reliability corpus, part III: inputs that used to crash, hang, leak a secret, go unseen or be guessed at.

Every probe is built at test time from small copies of ../shared and runs the stage that reads it (change
detection's walk and hashes, then ingest; describe or render where the probe is about them). A probe is
*handled* when it ends (each has 120 s), nothing crashes, the bad path gets its own quarantine row with the
expected reason (not silent), and every good sample of the same dataset is still read (not too broad).
The slow end-to-end probes (a build that must see a same-size same-mtime edit, a skip decision on an empty
data root, a stale dataset that must not block the others' export, the LLM path against a server that echoes
the key) are in tests/test_reliability_build.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pydicom
import pytest
import SimpleITK as sitk
import yaml
from PIL import Image, ImageOps

from pipelines.config import PipelineConfig
from pipelines.errors import Reason, SampleError
from pipelines.sources.fingerprint import HashCache, content_fingerprint
from pipelines.ingest import ingest
from pipelines.source import RegistryError
from pipelines.sources.registry import load_registry
from pipelines.sourcefiles import with_timeout
from tests.conftest import SHARED, needs_shared
from tests.test_bad_input_probes import (
    BCCD,
    CSV_MAP,
    DET_MAP,
    NPZ_MAP,
    VOL_MAP,
    coco_copy,
    csv_copy,
    csv_entry,
    dicom_copy,
    dicom_entry,
    dicom_map,
    nifti_pair,
    vol_entry,
    yolo_copy,
)

pytestmark = [needs_shared, pytest.mark.timeout(120)]
PNEUMONIA = SHARED / "pneumoniamnist_cxr_cls"
KVASIR = SHARED / "kvasir_seg_polyp_sample"
BRAIN = SHARED / "pyradiomics_mr_tumor"
FOLDER_MAP = {"labels": {"normal": None, "pneumonia": None}}
KVASIR_MAP = {"values": {1: "polyp"}}


@dataclass
class Outcome:
    samples: list[dict]
    bad: set[tuple[str, str]]  # (source path, reason code), the no_samples follow-on left out
    rows: list[dict]
    fingerprint: str
    problems: list


def probe(tmp: Path, entry: dict, label_map: dict, ds: str = "probe", config: dict | None = None) -> Outcome:
    """Register one dataset, fingerprint it as change detection does, then ingest it with what the walk found."""
    lm = tmp / f"{ds}.yaml"
    lm.write_text(yaml.safe_dump(label_map))
    (tmp / "sources.yaml").write_text(yaml.safe_dump({"version": 1, "datasets": [
        {"id": ds, "license": "test", "label_map": str(lm), **entry}]}))
    cfg = PipelineConfig.model_validate({"registry": str(tmp / "sources.yaml"), "data_root": str(tmp / "data"),
                                         **(config or {})})
    source = load_registry(cfg.registry).get(ds)
    problems: list = []
    fp = content_fingerprint(source, HashCache(limits=cfg.ingest.limits), problems)
    res = ingest(source, cfg, problems)
    rows = [r for r in res.quarantine.to_pylist() if r["reason_code"] != "no_samples"]
    return Outcome(res.samples.to_pylist(), {(r["source_path"], r["reason_code"]) for r in rows}, rows, fp, problems)


def folder(tmp: Path, n: int = 3) -> tuple[Path, dict]:
    """image_folder: n PNGs of each class copied from PneumoniaMNIST."""
    root = tmp / "folder"
    lines = (PNEUMONIA / "test_labels.csv").read_text().splitlines()[1:]
    for name in ("normal", "pneumonia"):
        (root / name).mkdir(parents=True)
        for line in [ln for ln in lines if ln.split(",")[-1] == name][:n]:
            shutil.copy(PNEUMONIA / "test_png" / line.split(",")[0], root / name)
    return root, {"root": str(root), "format": "image_folder", "modality": "X-ray", "dimension": 2, "task_type": "cls"}


def masks(tmp: Path, n: int = 3) -> tuple[Path, dict, list[str]]:
    """mask_pairs: n Kvasir image/mask pairs."""
    root = tmp / "kvasir"
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    stems = sorted(p.stem for p in (KVASIR / "images").glob("*.jpg"))[:n]
    for s in stems:
        shutil.copy(KVASIR / "images" / f"{s}.jpg", root / "images")
        shutil.copy(KVASIR / "masks" / f"{s}.jpg", root / "masks")
    return root, {"root": str(root), "format": "mask_pairs", "modality": "Endoscopy", "dimension": 2,
                  "task_type": "seg", "options": {"mask_name": "{stem}.jpg", "mode": "binary"}}, stems


def fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def unreadable(path: Path, like: Path) -> Path:
    """A file the reader may not open: mode 000 (or, when we run as root, which reads anything, a link to a
    procfs file that refuses reading even to root)."""
    shutil.copy(like, path)
    path.chmod(0)
    try:
        os.close(os.open(path, os.O_RDONLY))
    except PermissionError:
        return path
    path.unlink()
    path.symlink_to("/proc/sys/vm/drop_caches")
    return path


# -- 1. fingerprints that cannot crash or hang ---------------------------------------------------------

def _loop(root: Path) -> set:
    os.symlink("loop_b.png", root / "normal" / "loop_a.png")
    os.symlink("loop_a.png", root / "normal" / "loop_b.png")
    return {("normal/loop_a.png", "symlink_loop"), ("normal/loop_b.png", "symlink_loop")}


def _dangling(root: Path) -> set:
    os.symlink("no_such_file.png", root / "normal" / "gone.png")
    return {("normal/gone.png", "dangling_link")}


def _unreadable(root: Path) -> set:
    unreadable(root / "normal" / "locked.png", next((root / "normal").iterdir()))
    return {("normal/locked.png", "unreadable")}


def _fifo_image(root: Path) -> set:
    fifo(root / "normal" / "image.png")
    return {("normal/image.png", "not_a_regular_file")}


def _dir_loop(root: Path) -> set:
    (root / "normal" / "sub").mkdir()
    os.symlink("..", root / "normal" / "sub" / "back")
    return {("normal/sub/back", "symlink_loop")}


def _socket(root: Path) -> set:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(root / "normal" / "sock.png"))
    sock.close()
    return {("normal/sock.png", "not_a_regular_file")}


def _fifo_elsewhere(root: Path) -> set:
    (root / "notes").mkdir()
    fifo(root / "notes" / "pipe")
    os.symlink("/dev/zero", root / "notes" / "zero.bin")
    return {("notes/pipe", "not_a_regular_file"), ("notes/zero.bin", "not_a_regular_file")}


@pytest.mark.parametrize("make", [_loop, _dangling, _unreadable, _fifo_image, _dir_loop, _socket, _fifo_elsewhere],
                         ids=lambda f: f.__name__.strip("_"))
def test_walk_probes_on_an_image_folder(tmp_path, make):
    root, entry = folder(tmp_path)
    clean = probe(tmp_path, entry, FOLDER_MAP)
    assert len(clean.samples) == 6 and not clean.bad
    expected = make(root)
    got = probe(tmp_path, entry, FOLDER_MAP)
    assert got.bad == expected  # each bad path reported once, with its reason
    assert len(got.samples) == 6  # no good sample lost
    assert got.fingerprint != clean.fingerprint  # the bad path is part of the fingerprint, as its reason


def test_fifo_and_dev_zero_in_a_volume_dataset(tmp_path):
    root = nifti_pair(tmp_path)
    shutil.copy(root / "labels" / "brain1.nii.gz", root / "labels" / "scan.nii.gz")
    os.symlink("/dev/zero", root / "images" / "scan.nii.gz")
    shutil.copy(root / "labels" / "brain1.nii.gz", root / "labels" / "pipe.nii.gz")
    fifo(root / "images" / "pipe.nii.gz")
    got = probe(tmp_path, vol_entry(root), VOL_MAP)
    assert got.bad == {("images/scan.nii.gz", "not_a_regular_file"), ("images/pipe.nii.gz", "not_a_regular_file")}
    assert len(got.samples) == 1


def test_mask_is_dev_null_and_image_is_a_fifo(tmp_path):
    root, entry, stems = masks(tmp_path)
    (root / "masks" / f"{stems[0]}.jpg").unlink()
    os.symlink("/dev/null", root / "masks" / f"{stems[0]}.jpg")
    fifo(root / "images" / "image.jpg")
    got = probe(tmp_path, entry, KVASIR_MAP)
    assert got.bad == {(f"masks/{stems[0]}.jpg", "not_a_regular_file"), ("images/image.jpg", "not_a_regular_file")}
    assert len(got.samples) == 2


@pytest.mark.parametrize("which", ["manifest", "dataset_json"])
def test_annotation_file_is_a_fifo(tmp_path, which):
    if which == "manifest":
        root, _ = csv_copy(tmp_path)
        fifo(root / "m.csv")
        got = probe(tmp_path, csv_entry(root), CSV_MAP)
        assert got.bad == {("m.csv", "not_a_regular_file")} and got.samples == []
    else:
        root = tmp_path / "msd"
        for sub, src in (("imagesTr", "images"), ("labelsTr", "labels")):
            (root / sub).mkdir(parents=True)
            shutil.copy(BRAIN / src / "brain1.nii.gz", root / sub)
        fifo(root / "dataset.json")
        got = probe(tmp_path, {"root": str(root), "format": "msd", "modality": "MR", "dimension": 3,
                               "task_type": "seg"}, VOL_MAP)
        assert got.bad == {("dataset.json", "not_a_regular_file")} and got.samples == []


def test_file_over_the_size_cap(tmp_path):
    root, entry = folder(tmp_path)
    big = np.random.default_rng(0).integers(0, 255, (96, 96), np.uint8)
    Image.fromarray(big).save(root / "normal" / "big.png")
    cap = max(p.stat().st_size for p in root.rglob("*.png") if p.name != "big.png") + 1
    assert (root / "normal" / "big.png").stat().st_size > cap
    got = probe(tmp_path, entry, FOLDER_MAP, config={"ingest": {"max_file_bytes": cap}})
    assert got.bad == {("normal/big.png", "file_too_large")} and len(got.samples) == 6


def test_fifo_among_dicom_slices(tmp_path):
    root, files = dicom_copy(tmp_path)
    fifo(root / "dicom" / "zz_pipe.dcm")
    got = probe(tmp_path, dicom_entry(root), dicom_map())
    assert got.bad == {("dicom/zz_pipe.dcm", "not_a_regular_file")} and len(got.samples) == 1


def test_detection_files_that_are_links_or_fifos(tmp_path):
    root, doc = coco_copy(tmp_path)
    name = doc["images"][1]["file_name"]
    (root / "images" / name).unlink()
    os.symlink("elsewhere.jpg", root / "images" / name)
    (root / "ann.json").write_text(json.dumps(doc))
    got = probe(tmp_path, {"root": str(root), "format": "coco", "modality": "Microscopy", "dimension": 2,
                           "task_type": "det", "options": {"file": "ann.json", "image_root": "images"}}, DET_MAP)
    assert got.bad == {(f"images/{name}", "dangling_link")} and len(got.samples) == 4
    yroot, _ = yolo_copy(tmp_path / "y")
    (yroot / "classes.txt").write_text("RBC\nWBC\nPlatelets\n")
    txt = sorted((yroot / "labels").glob("*.txt"))[0]
    txt.unlink()
    fifo(txt)
    got = probe(tmp_path / "y", {"root": str(yroot), "format": "yolo", "modality": "Microscopy", "dimension": 2,
                                 "task_type": "det"}, DET_MAP)
    assert got.bad == {(f"labels/{txt.name}", "not_a_regular_file")} and len(got.samples) == 3


def test_dangling_voc_annotation(tmp_path):
    root = tmp_path / "voc"
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    xmls = sorted((BCCD / "Annotations").glob("*.xml"))[:3]
    for x in xmls:
        shutil.copy(x, root / "Annotations")
        shutil.copy(BCCD / "JPEGImages" / f"{x.stem}.jpg", root / "JPEGImages")
    os.symlink("missing.xml", root / "Annotations" / "BloodImage_99999.xml")
    got = probe(tmp_path, {"root": str(root), "format": "voc", "modality": "Microscopy", "dimension": 2,
                           "task_type": "det"}, DET_MAP)
    assert got.bad == {("Annotations/BloodImage_99999.xml", "dangling_link")} and len(got.samples) == 3


def test_a_blocked_read_times_out(tmp_path):
    """The deadline is real: a read that blocks in the kernel (opening a FIFO no one writes) is given up after
    the timeout and reported, and the caller goes on."""
    pipe = fifo(tmp_path / "pipe")
    start = time.monotonic()
    with pytest.raises(SampleError) as err:
        with_timeout(lambda: open(pipe, "rb").read(), 1.0, "pipe")
    assert err.value.reason == Reason.READ_TIMEOUT and time.monotonic() - start < 10


def test_npz_archive_is_a_fifo(tmp_path):
    root = tmp_path / "npz"
    root.mkdir()
    fifo(root / "a.npz")
    got = probe(tmp_path, {"root": str(root), "format": "npz", "modality": "X-ray", "dimension": 2,
                           "task_type": "cls", "options": {"file": "a.npz", "splits": ["test"]}}, NPZ_MAP)
    assert got.bad == {("a.npz", "not_a_regular_file")}


# -- 4. orientation from the file, or a refusal ------------------------------------------------------

# EXIF orientation -> the transform that shows the stored pixels as the viewer must (numpy, independent of PIL)
EXIF_VIEW = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
             5: lambda a: np.swapaxes(a, 0, 1), 6: lambda a: np.rot90(a, -1), 7: lambda a: a[::-1, ::-1].T,
             8: lambda a: np.rot90(a, 1)}


def _exif_png(src: Path, dst: Path, orientation: int) -> np.ndarray:
    """A copy of ``src`` (an asymmetric crop, so every orientation differs) saved with an EXIF orientation tag;
    returns the stored pixels."""
    arr = np.asarray(Image.open(src).convert("L"))[:20, :28].copy()
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(arr).save(dst, exif=exif.tobytes())
    return arr


@pytest.mark.parametrize("orientation", [2, 3, 4, 5, 6, 7, 8])
def test_exif_orientation_is_applied_on_read(tmp_path, orientation):
    root, entry = folder(tmp_path, 1)
    src = next((root / "normal").iterdir())
    stored = _exif_png(src, root / "normal" / "exif.png", orientation)
    got = probe(tmp_path, entry, FOLDER_MAP)
    assert not got.bad and len(got.samples) == 3
    from pipelines.ingest import reader_for
    cfg = PipelineConfig.model_validate({"registry": str(tmp_path / "sources.yaml"), "data_root": str(tmp_path / "d")})
    row = next(s for s in got.samples if s["source_path"] == "normal/exif.png")
    shown = reader_for(load_registry(cfg.registry).get("probe"), cfg).load(row).image
    expected = EXIF_VIEW[orientation](stored)
    assert row["shape"] == list(expected.shape) and np.array_equal(shown, expected)
    assert np.array_equal(expected, np.asarray(ImageOps.exif_transpose(Image.open(root / "normal" / "exif.png"))))


def test_exif_image_is_rendered_upright(tmp_path):
    """Describe and render an EXIF-6 photo: the item's PNG shows it turned as the tag says (grey levels re-derived
    from the stored pixels with numpy)."""
    from pipelines.render.items import render_items
    cfg, tables, items, roots, sizes = _described(tmp_path, ("a",))
    root = roots["ds_a"]
    stored = _exif_png(next((root / "normal").iterdir()), root / "normal" / "exif.png", 6)
    cfg, tables, items, roots, sizes = _described(tmp_path / "again", ("a",), prepared={"ds_a": root})
    t = tables["ds_a"]
    sample = t.samples.loc[t.samples["source_path"] == "normal/exif.png", "sample_id"].item()
    image_id = t.slices.loc[t.slices["sample_id"] == sample, "image_id"].item()
    item = items.loc[items["image_id"] == image_id, "item_id"].item()
    res = render_items(items, tables, cfg, cfg.data_root / "rendered", sizes=sizes)
    path = res.table.to_pandas().set_index("item_id").loc[item, "image_path"]
    png = np.asarray(Image.open(cfg.data_root / path))
    assert png.shape[:2] == (28, 20) and np.array_equal(png[..., 0], EXIF_VIEW[6](stored))


def test_exif_rotated_image_with_annotations_is_refused(tmp_path):
    root, entry, stems = masks(tmp_path)
    img = Image.open(root / "images" / f"{stems[0]}.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(root / "images" / f"{stems[0]}.jpg", exif=exif.tobytes(), quality=95)
    got = probe(tmp_path, entry, KVASIR_MAP)
    assert got.bad == {(f"images/{stems[0]}.jpg", "exif_orientation")} and len(got.samples) == 2
    croot, doc = coco_copy(tmp_path / "c", 3)
    name = doc["images"][0]["file_name"]
    Image.open(croot / "images" / name).save(croot / "images" / name, exif=exif.tobytes(), quality=95)
    (croot / "ann.json").write_text(json.dumps(doc))
    got = probe(tmp_path / "c", {"root": str(croot), "format": "coco", "modality": "Microscopy", "dimension": 2,
                                 "task_type": "det", "options": {"file": "ann.json", "image_root": "images"}}, DET_MAP)
    assert got.bad == {(f"images/{name}", "exif_orientation")} and len(got.samples) == 2


def _rotated_nifti(root: Path, degrees: float, axis: int = 2) -> np.ndarray:
    """Rewrite images/ and labels/ brain1 with the same voxels and an affine rotated about one axis; returns the
    new affine."""
    t = np.radians(degrees)
    c, s = np.cos(t), np.sin(t)
    rot = {2: np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]), 0: np.array([[1, 0, 0], [0, c, -s], [0, s, c]])}[axis]
    affine = None
    for sub in ("images", "labels"):
        img = nib.load(str(root / sub / "brain1.nii.gz"))
        affine = img.affine.copy()
        affine[:3, :3] = rot @ affine[:3, :3]
        out = nib.Nifti1Image(np.asanyarray(img.dataobj), affine, img.header.copy())
        out.set_sform(affine, 1)
        out.set_qform(affine, 1)
        nib.save(out, str(root / sub / "brain1.nii.gz"))
    return affine


def _world_centroid(data: np.ndarray, affine: np.ndarray) -> np.ndarray:
    idx = np.argwhere(data > 0).astype(float)
    return (affine[:3, :3] @ idx.mean(axis=0)) + affine[:3, 3]


@pytest.mark.parametrize("degrees, oblique", [(30.0, True), (1.5, True), (0.5, False), (90.0, False)])
def test_oblique_nifti_is_resampled_or_left_alone(tmp_path, degrees, oblique):
    root = nifti_pair(tmp_path)
    affine = _rotated_nifti(root, degrees)
    got = probe(tmp_path, vol_entry(root), VOL_MAP)
    assert not got.bad and len(got.samples) == 1
    meta = json.loads(got.samples[0]["reader_meta"])
    assert ("oblique_deg" in meta) == oblique
    if oblique:
        assert abs(meta["oblique_deg"] - degrees) < 0.01
    # describe: the planes come from a grid whose axes are the patient's, and the tumour stays where it was
    from pipelines.standardize.run import canonical_volume
    from pipelines.volume import obliquity_deg
    cfg = PipelineConfig.model_validate({"registry": str(tmp_path / "sources.yaml"), "data_root": str(tmp_path / "d")})
    from pipelines.ingest import reader_for
    loaded = reader_for(load_registry(cfg.registry).get("probe"), cfg).load(got.samples[0])
    canon = canonical_volume(loaded, cfg.standardize, "images/brain1.nii.gz")
    assert obliquity_deg(canon.image.GetDirection()) < (1e-6 if oblique else 1.0)  # within the tolerance: kept
    lab = canon.layers[0][0]
    arr = sitk.GetArrayFromImage(lab)  # z, y, x
    pts = np.argwhere(arr > 0)[:, ::-1].astype(float)
    world_lps = np.array([lab.TransformContinuousIndexToPhysicalPoint(p) for p in pts[:: max(1, len(pts) // 2000)]])
    centroid_ras = world_lps.mean(axis=0) * np.array([-1, -1, 1])
    truth = _world_centroid(np.asanyarray(nib.load(str(root / "labels" / "brain1.nii.gz")).dataobj), affine)
    assert np.linalg.norm(centroid_ras - truth) < 2 * max(lab.GetSpacing())


def test_oblique_nifti_quarantined_when_asked(tmp_path):
    root = nifti_pair(tmp_path)
    _rotated_nifti(root, 30.0, axis=0)
    got = probe(tmp_path, vol_entry(root), VOL_MAP, config={"standardize": {"oblique": "quarantine"}})
    assert got.bad == {("images/brain1.nii.gz", "oblique_orientation")} and got.samples == []
    assert "30.0 degrees" in got.rows[0]["reason"]


@pytest.mark.parametrize("tilt, sheared, refused", [(15.0, False, True), (0.0, True, True), (0.5, False, False)])
def test_dicom_gantry_tilt(tmp_path, tilt, sheared, refused):
    """A tilt stated in (0018,1120), or slices whose positions lean off their normal, is refused; a tilt
    within the tolerance reads."""
    root, files = dicom_copy(tmp_path)
    headers = sorted(((f, pydicom.dcmread(f)) for f in files), key=lambda t: float(t[1].ImagePositionPatient[2]))
    for k, (f, ds) in enumerate(headers):
        ds.GantryDetectorTilt = tilt
        if sheared:
            ipp = [float(v) for v in ds.ImagePositionPatient]
            ds.ImagePositionPatient = [ipp[0], ipp[1] + k * 1.5, ipp[2]]
        ds.save_as(f)
    got = probe(tmp_path, dicom_entry(root), dicom_map())
    if refused:
        assert {r for _, r in got.bad} == {"oblique_orientation"} and got.samples == []
        assert "gantry tilt" in got.rows[0]["reason"]
    else:
        assert not got.bad and len(got.samples) == 1


# -- 5. inputs kept inside their place ------------------------------------------------------------------

def _registry(tmp: Path, root: str) -> Path:
    lm = tmp / "lm.yaml"
    lm.write_text(yaml.safe_dump(FOLDER_MAP))
    path = tmp / "reg" / "sources.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump({"version": 1, "datasets": [
        {"id": "probe", "root": root, "format": "image_folder", "modality": "X-ray", "dimension": 2,
         "task_type": "cls", "license": "test", "label_map": str(lm)}]}))
    return path


@pytest.mark.parametrize("root", ["../../../../../../../../etc", "/etc", "inside/../../../../../../usr"])
def test_registry_root_outside_is_refused(tmp_path, root):
    with pytest.raises(RegistryError, match="(?s)outside the registry's folder.*fix: .*data_dirs"):
        load_registry(_registry(tmp_path, root), data_dirs=[])


def test_registry_root_inside_or_listed_is_accepted(tmp_path, monkeypatch):
    inside, _ = folder(tmp_path / "reg")
    elsewhere, _ = folder(tmp_path / "disk")
    assert load_registry(_registry(tmp_path, "folder"), data_dirs=[]).get("probe").root == inside
    assert load_registry(_registry(tmp_path, "./sub/../folder"), data_dirs=[]).get("probe").root == inside
    with pytest.raises(RegistryError):
        load_registry(_registry(tmp_path, str(elsewhere)), data_dirs=[])
    assert load_registry(_registry(tmp_path, str(elsewhere)), data_dirs=[tmp_path / "disk"]).get("probe")
    # the configuration lists it (YAML), or the environment does: the default for load_registry
    conf = tmp_path / "conf.yaml"
    conf.write_text(yaml.safe_dump({"ingest": {"data_dirs": [str(tmp_path / "disk")]}}))
    monkeypatch.setenv("MEDBENCH_DATA_DIRS", "")
    monkeypatch.setenv("MEDBENCH_CONFIG", str(conf))
    assert load_registry(_registry(tmp_path, str(elsewhere))).get("probe")
    monkeypatch.delenv("MEDBENCH_CONFIG")
    with pytest.raises(RegistryError):
        load_registry(_registry(tmp_path, str(elsewhere)))
    monkeypatch.setenv("MEDBENCH_DATA_DIRS", str(tmp_path / "disk"))
    assert load_registry(_registry(tmp_path, str(elsewhere))).get("probe")
    # a symlink the user placed in the registry folder is followed deliberately
    monkeypatch.setenv("MEDBENCH_DATA_DIRS", "")
    os.symlink(elsewhere, tmp_path / "reg" / "linked")
    assert load_registry(_registry(tmp_path, "linked")).get("probe")


def test_labels_init_refuses_a_root_outside(tmp_path):
    from pipelines.vocab.label_init import scan
    reg = _registry(tmp_path, "/etc")
    with pytest.raises(RegistryError, match="outside"):
        scan(reg, "probe", PipelineConfig.model_validate({"data_root": str(tmp_path / "d")}))


def test_gif_images_are_read_as_their_first_frame(tmp_path):
    root, entry = folder(tmp_path, 1)
    base = np.asarray(Image.open(next((root / "normal").iterdir())).convert("L"))
    frames = [Image.fromarray(base), Image.fromarray(255 - base)]
    frames[0].save(root / "normal" / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    frames[1].save(root / "pneumonia" / "still.GIF")
    (root / "pneumonia" / "broken.gif").write_bytes(b"GIF89a" + b"\x00" * 20)
    got = probe(tmp_path, entry, FOLDER_MAP)
    assert got.bad == {("pneumonia/broken.gif", "corrupt_file")} and len(got.samples) == 4
    from pipelines.ingest import reader_for
    cfg = PipelineConfig.model_validate({"registry": str(tmp_path / "sources.yaml"), "data_root": str(tmp_path / "d")})
    reader = reader_for(load_registry(cfg.registry).get("probe"), cfg)
    anim = reader.load(next(s for s in got.samples if s["source_path"] == "normal/anim.gif")).image
    channels = [anim] if anim.ndim == 2 else [anim[..., c] for c in range(anim.shape[2])]
    assert all(np.array_equal(c, base) for c in channels)  # the first frame, not the inverted second


def test_gif_masks_and_unsupported_image_formats_are_reported(tmp_path):
    root, entry, stems = masks(tmp_path)
    for s in stems:  # DRIVE/STARE-style GIF masks
        Image.open(root / "masks" / f"{s}.jpg").convert("L").point(lambda v: 255 if v > 127 else 0).save(
            root / "masks" / f"{s}.gif")
    entry["options"]["mask_name"] = "{stem}.gif"
    Image.open(root / "images" / f"{stems[0]}.jpg").save(root / "images" / "extra.tga")
    got = probe(tmp_path, entry, KVASIR_MAP)
    assert got.bad == {("images/extra.tga", "unsupported_format")} and len(got.samples) == 3
    assert "ingest.image_extensions" in got.rows[0]["reason"]


# -- 3. content-true change detection (the fingerprint; the build-level probe is in test_reliability_build) ---

def _csv_source(tmp: Path):
    root, _ = csv_copy(tmp, 6)
    lines = (PNEUMONIA / "test_labels.csv").read_text().splitlines()[:7]
    (root / "m.csv").write_text("\n".join(lines) + "\n")
    lm = tmp / "probe.yaml"
    lm.write_text(yaml.safe_dump(CSV_MAP))
    reg = tmp / "sources.yaml"
    reg.write_text(yaml.safe_dump({"version": 1, "datasets": [
        {"id": "probe", "license": "test", "label_map": str(lm), **csv_entry(root)}]}))
    return root, reg, lm


def _same_size_edit(path: Path) -> None:
    """Swap two lines with different labels: same size; then restore the old mtime (as `touch -d`, `cp -p` or
    `rsync -t` leave it)."""
    st = path.stat()
    lines = path.read_text().splitlines()
    i = next(k for k in range(2, len(lines)) if lines[k].split(",")[-1] != lines[1].split(",")[-1])
    a, b = lines[1].split(","), lines[i].split(",")
    a[-1], b[-1] = b[-1], a[-1]
    lines[1], lines[i] = ",".join(a), ",".join(b)
    path.write_text("\n".join(lines) + "\n")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns


def _replace_like_rsync(path: Path) -> None:
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[-2] = ord("X") if data[-2] != ord("X") else ord("Y")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(bytes(data))
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(tmp, path)


CHANGES = {
    "same_size_same_mtime_edit": (lambda root, reg, lm: _same_size_edit(root / "m.csv"), True),
    "replaced_like_rsync_t": (lambda root, reg, lm: _replace_like_rsync(root / "m.csv"), True),
    "touch_only": (lambda root, reg, lm: os.utime(root / "m.csv"), False),
    "chmod_only": (lambda root, reg, lm: (root / "m.csv").chmod(0o640), False),
    "renamed_image": (lambda root, reg, lm: next((root / "test_png").iterdir()).rename(root / "test_png" / "z.png"), True),
    "added_file": (lambda root, reg, lm: (root / "notes.txt").write_text("x"), True),
    "removed_file": (lambda root, reg, lm: next((root / "test_png").iterdir()).unlink(), True),
    "label_map_edit": (lambda root, reg, lm: lm.write_text(lm.read_text() + "# reviewed\n"), True),
    "registry_entry_edit": (lambda root, reg, lm: reg.write_text(yaml.safe_dump(
        {**(d := yaml.safe_load(reg.read_text())), "datasets": [{**d["datasets"][0], "notes": "re-labelled"}]})), True),
    "symlink_retargeted": (lambda root, reg, lm: (os.remove(root / "link"), os.symlink("/usr", root / "link")), True),
}


@pytest.mark.parametrize("name", list(CHANGES))
def test_change_detection_sees_content_not_stat(tmp_path, name):
    root, reg, lm = _csv_source(tmp_path)
    os.symlink("/etc", root / "link")  # a directory link out of the root enters as its target
    cache_path = tmp_path / "cache.json"
    cache = HashCache.load(cache_path)
    before = content_fingerprint(load_registry(reg).get("probe"), cache)
    cache.save()
    change, seen = CHANGES[name]
    change(root, reg, lm)
    again = HashCache.load(cache_path)
    after = content_fingerprint(load_registry(reg).get("probe"), again)
    assert (after != before) == seen
    if name in ("touch_only", "chmod_only"):
        assert again.hashed == 1  # the stat changed: the file is read again, its content decides


def test_verify_rehashes_everything_and_catches_what_stat_cannot(tmp_path):
    """A poisoned cache entry stands for an edit no stat can show (a file system with coarse timestamps, a
    restored ctime): only --verify, which trusts no stat, sees it."""
    root, reg, _ = _csv_source(tmp_path)
    source = load_registry(reg).get("probe")
    cache_path = tmp_path / "cache.json"
    cache = HashCache.load(cache_path)
    fp = content_fingerprint(source, cache)
    cache.save()
    n_files = sum(1 for p in root.rglob("*") if p.is_file())
    entries = json.loads(cache_path.read_text())
    entries[str(root / "m.csv")][4] = "0" * 64
    cache_path.write_text(json.dumps(entries))
    lazy = HashCache.load(cache_path)
    assert content_fingerprint(source, lazy) != fp and lazy.hashed == 0  # trusted the (wrong) cache
    strict = HashCache.load(cache_path, verify=True)
    assert content_fingerprint(source, strict) == fp and strict.hashed == n_files


def test_unreadable_cache_and_state_never_stop_the_walk(tmp_path):
    root, reg, _ = _csv_source(tmp_path)
    (tmp_path / "cache.json").write_text("[1, 2")
    assert HashCache.load(tmp_path / "cache.json").entries == {}
    (tmp_path / "cache.json").write_text("[1, 2]")  # valid JSON, wrong shape
    cache = HashCache.load(tmp_path / "cache.json")
    assert cache.entries == {} and content_fingerprint(load_registry(reg).get("probe"), cache)
    cache.path = tmp_path / "no" / "such" / "dir" / "c.json"
    (tmp_path / "no").write_text("a file where a folder should be")
    cache.save()  # an unwritable cache costs a re-hash next time, never the build


# -- 2. secrets never stored: the one redaction filter ------------------------------------------------

KEY = "sk-reliability-0123456789abcdef"


@pytest.mark.parametrize("text, secret", [
    ("Authorization: Bearer abc.DEF-123_xyz", "abc.DEF-123_xyz"),
    ("headers={'x-api-key': 'k3y-VALUE-9876'}", "k3y-VALUE-9876"),
    ("POST https://host/openai/chat?api-version=2024&api-key=AZ-secret-42 failed", "AZ-secret-42"),
    ("GET https://maps/x?token=t0k3nvalue&sig=s1gnature1", "t0k3nvalue"),
    ('{"api_key": "json-secret-777", "client_secret": "cs-888888"}', "json-secret-777"),
    ("Incorrect API key provided: sk-proj-AbCdEf0123456789", "sk-proj-AbCdEf0123456789"),
    ("push failed with token hf_AbCdEfGhIjKlMnOp", "hf_AbCdEfGhIjKlMnOp"),
])
def test_credential_shapes_are_redacted(text, secret):
    from pipelines.redact import MASK, redact
    out = redact(text)
    assert secret not in out and MASK in out


def test_known_secret_values_are_redacted_wherever_they_appear(monkeypatch):
    from pipelines.llm import LLMClient
    from pipelines.redact import redact
    monkeypatch.setenv("OPENAI_API_KEY", "plainvalue-no-shape-1234")
    assert "plainvalue-no-shape-1234" not in redact("the server said: plainvalue-no-shape-1234!")
    LLMClient(PipelineConfig().llm, api_key="given-directly-5678")  # a key handed to the client is registered
    assert "given-directly-5678" not in redact("echo given-directly-5678")
    plain = "no API key: set OPENAI_API_KEY to use gpt-4o; 120 prompt tokens; http://127.0.0.1:8000/v1"
    assert redact(plain) == plain  # ordinary text is left alone


def test_every_log_record_is_redacted(monkeypatch):
    import logging

    from pipelines.redact import install_log_redaction
    install_log_redaction()
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(logging.Formatter().format(record))

    log = logging.getLogger("medbench.test.redaction")
    log.addHandler(Keep())
    log.propagate = False
    log.warning("calling with %s", KEY)
    try:
        raise RuntimeError(f"401 for Bearer {KEY}")
    except RuntimeError:
        log.exception("request failed")
    assert len(seen) == 2 and all(KEY not in s for s in seen) and "[REDACTED]" in seen[1]


@pytest.mark.parametrize("status", [401, 500])
def test_llm_errors_echoing_the_key_are_redacted_and_not_chained(tmp_path, monkeypatch, status):
    from pipelines.llm import LLMClient, LLMResponseError
    from tests.openai_server import OpenAIServer
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with OpenAIServer(lambda body: "{}", fail_with=status, fail_message="bad key {key} ({auth})") as server:
        settings = PipelineConfig().llm.model_copy(update={"base_url": server.base_url, "max_retries": 0,
                                                           "cache_dir": tmp_path / "cache"})
        with pytest.raises(LLMResponseError) as err:
            LLMClient(settings).complete_json([{"role": "user", "content": "x"}], "s", {"type": "object"})
        assert server.requests[0]["auth"] == f"Bearer {KEY}"  # the server did see (and echo) it
    assert KEY not in str(err.value) and "[REDACTED]" in str(err.value)
    assert err.value.__cause__ is None and err.value.__context__ is None  # the SDK error (unredacted) is not chained


def test_malformed_reply_echoing_the_key_and_failed_calls_are_counted(tmp_path, monkeypatch):
    from pipelines.llm import LLMClient, usage_summary
    from tests.openai_server import OpenAIServer
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with OpenAIServer(lambda body: f"here is your key {KEY} and no JSON") as server:
        settings = PipelineConfig().llm.model_copy(update={"base_url": server.base_url, "max_retries": 0,
                                                           "cache_dir": tmp_path / "cache"})
        results = LLMClient(settings).map_json([([{"role": "user", "content": str(i)}], "s", {"type": "object"})
                                                for i in range(3)])
    usage = usage_summary([r for _, r in results])
    assert usage["errors"] == 3 and all(KEY not in (c["error"] or "") for c in usage["calls"])


def test_step_failures_are_redacted_before_dagster_stores_them(monkeypatch):
    import dagster as dg

    from assets.metadata import redacted_failures
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with pytest.raises(dg.Failure) as err:
        with redacted_failures():
            try:
                raise ConnectionError(f"proxy refused Authorization: Bearer {KEY}")
            except ConnectionError as inner:
                raise RuntimeError(f"step failed: {inner}") from inner
    assert KEY not in (err.value.description or "") and err.value.__suppress_context__


def test_hub_push_uses_the_same_filter():
    from pipelines.publish import redact as hub_redact
    assert "hf_TOKENVALUE123456" not in hub_redact("Authorization: Bearer hf_TOKENVALUE123456", None)
    assert "my-own-token" not in hub_redact("failed for my-own-token", "my-own-token")


# -- 6. one dataset's change never blocks another's rendering ------------------------------------------

def _described(tmp: Path, names: tuple[str, ...] = ("a", "b"), prepared: dict[str, Path] | None = None):
    """Image-folder datasets (two by default), ingested and described; every image region is an item."""
    from pipelines.candidates.rows import targets
    from pipelines.render.items import DatasetTables
    from pipelines.standardize.run import standardize_dataset
    docs, roots = [], {}
    tmp.mkdir(parents=True, exist_ok=True)
    for name in names:
        if prepared and f"ds_{name}" in prepared:
            root = prepared[f"ds_{name}"]
            entry = {"root": str(root), "format": "image_folder", "modality": "X-ray", "dimension": 2,
                     "task_type": "cls"}
        else:
            root, entry = folder(tmp / name, 2)
        lm = tmp / f"{name}.yaml"
        lm.write_text(yaml.safe_dump(FOLDER_MAP))
        docs.append({"id": f"ds_{name}", "license": "test", "label_map": str(lm), **entry})
        roots[f"ds_{name}"] = root
    (tmp / "sources.yaml").write_text(yaml.safe_dump({"version": 1, "datasets": docs}))
    cfg = PipelineConfig.model_validate({"registry": str(tmp / "sources.yaml"), "data_root": str(tmp / "data")})
    registry = load_registry(cfg.registry)
    tables, items = {}, []
    for ds in registry.ids:
        src = registry.get(ds)
        samples = ingest(src, cfg).samples
        std = standardize_dataset(src, cfg, samples, cfg.data_root)
        tables[ds] = DatasetTables(src, samples.to_pandas(), std.slices.to_pandas(), std.regions.to_pandas())
        for r in targets(std.regions.to_pandas(), cfg.render.scope).itertuples():
            items.append({"item_id": f"{ds}_{r.target_id}", "dataset_id": ds, "image_id": r.image_id,
                          "granularity": "image", "source_region_ids": list(r.member_region_ids),
                          "generator_params": None, "variant": None})
    items = pd.DataFrame(items)
    sizes = {}
    for ds, t in tables.items():
        sl = t.slices.set_index("image_id")
        for it in items[items["dataset_id"] == ds].itertuples():
            sizes[it.item_id] = (int(sl.loc[it.image_id, "display_width"]), int(sl.loc[it.image_id, "display_height"]))
    return cfg, tables, items, roots, sizes


def _break(how: str, root: Path) -> None:
    for p in sorted(root.rglob("*.png")):
        if how == "edited":
            arr = np.asarray(Image.open(p))
            Image.fromarray(255 - arr).save(p)
        elif how == "deleted":
            p.unlink()
        elif how == "fifo":
            p.unlink()
            fifo(p)


@pytest.mark.parametrize("how, previous, keep", [
    ("edited", "good", "all"), ("edited", "none", "none"), ("edited", "wrong_size", "none"),
    ("edited", "png_deleted", "none"), ("edited", "png_corrupted", "none"),
    ("deleted", "good", "all"), ("fifo", "good", "all"), ("fifo", "none", "none"),
])
def test_render_isolates_a_dataset_whose_source_changed(tmp_path, how, previous, keep):
    from pipelines.render.items import render_items
    cfg, tables, items, roots, sizes = _described(tmp_path)
    out = cfg.data_root / "rendered"
    first = render_items(items, tables, cfg, out, previous=None, sizes=sizes)
    assert not first.stale and first.table.num_rows == len(items)
    prev = first.table.to_pandas()
    a_items = set(items.loc[items["dataset_id"] == "ds_a", "item_id"])
    if previous == "none":
        prev = None
    elif previous == "wrong_size":
        sizes = {k: ((w + 1, h) if k in a_items else (w, h)) for k, (w, h) in sizes.items()}
    elif previous == "png_deleted":
        for p in (out / "ds_a").iterdir():
            p.unlink()
    elif previous == "png_corrupted":
        for p in (out / "ds_a").iterdir():
            p.write_bytes(p.read_bytes()[:-8] + b"\0" * 8)
    _break(how, roots["ds_a"])
    res = render_items(items, tables, cfg, out, previous=prev, sizes=sizes)
    assert set(res.stale) == {"ds_a"}  # only the changed dataset
    got = set(res.table.column("item_id").to_pylist())
    b_items = set(items["item_id"]) - a_items
    assert b_items <= got  # the other dataset is rendered as usual
    stale = res.stale["ds_a"]
    if keep == "all":
        assert a_items <= got and stale.reused == len(a_items) and not stale.left_out
        kept, before = res.table.to_pandas().set_index("item_id"), first.table.to_pandas().set_index("item_id")
        for i in a_items:  # the kept file is the last good one, byte for byte
            data = (out / Path(kept.loc[i, "image_path"]).relative_to("rendered")).read_bytes()
            assert hashlib.sha256(data).hexdigest() == before.loc[i, "sha256"]
    else:
        assert not (a_items & got) and set(stale.left_out) == a_items


def test_items_tied_to_an_unrendered_item_leave_with_it():
    from pipelines.export.stale import leave_out_unrendered
    bench = pd.DataFrame([
        {"item_id": "m1", "unit_id": "u1", "variant_of": None, "dataset_id": "a", "image_path": None},
        {"item_id": "c1", "unit_id": "u1", "variant_of": None, "dataset_id": "a", "image_path": "r/c1.png"},  # twin
        {"item_id": "m1_flip", "unit_id": "u9", "variant_of": "m1", "dataset_id": "a", "image_path": "r/f.png"},
        {"item_id": "x2", "unit_id": "u2", "variant_of": None, "dataset_id": "a", "image_path": "r/x2.png"},
        {"item_id": "x2_noise", "unit_id": "u3", "variant_of": "x2", "dataset_id": "a", "image_path": None},
        {"item_id": "ok", "unit_id": "u4", "variant_of": None, "dataset_id": "a", "image_path": "r/ok.png"},
        {"item_id": "b1", "unit_id": "u5", "variant_of": None, "dataset_id": "b", "image_path": "r/b1.png"},
        {"item_id": "b2", "unit_id": "u6", "variant_of": None, "dataset_id": "b", "image_path": None},
    ])
    kept, counts = leave_out_unrendered(bench, {"a"})
    assert sorted(kept["item_id"]) == ["b1", "b2", "ok"] and counts == {"a": 5}  # b is not stale: b2 stays an error


def test_summary_names_stale_datasets_and_llm_failures(tmp_path):
    from pipelines.run_state import record_llm_calls, record_stale
    from pipelines.summary import summarize
    record_stale(tmp_path, {"ds_a": {"reason": "x.png: plane differs", "samples": 2, "reused": 3, "left_out": 1}})
    record_llm_calls(tmp_path, "question_templates", 12, 12, ["401 Incorrect API key provided: [REDACTED]"])
    text = summarize(tmp_path, ["ds_a", "ds_b"]).render()
    assert "STALE dataset ds_a: x.png: plane differs; 3 item(s) keep their last good image, 1 left out" in text
    assert "LLM question_templates: 12 request(s), 12 failed (first: 401 Incorrect API key provided: [REDACTED])" in text
