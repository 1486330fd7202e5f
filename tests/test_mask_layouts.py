"""2D layouts as datasets ship them, registered from the documented options only: DRIVE-style names that differ
beyond a suffix (image_key + {key}), annotations stored beside their images (excluded and reported), glob masks
with one file per instance, a CSV of (image, mask) pairs, a symlinked dataset folder, `labels init` on a dataset
with no readable sample, and a classification CSV naming images by id. Every file is written here as a real
TIFF/GIF/PNG; expected counts and values come from what the test wrote."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from cli.main import app
from pipelines.config import PipelineConfig
from pipelines.sources.fingerprint import content_fingerprint
from pipelines.ingest import ingest
from pipelines.sources.registry import load_registry
from pipelines.standardize.run import standardize_dataset


def image(path, h=40, w=48, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path)


def mask(path, boxes, h=40, w=48, value=255):
    path.parent.mkdir(parents=True, exist_ok=True)
    m = np.zeros((h, w), np.uint8)
    for y0, y1, x0, x1 in boxes:
        m[y0:y1, x0:x1] = value
    Image.fromarray(m).save(path)
    return m


def registry(tmp_path, entries, values=None, labels=None):
    (tmp_path / "lm.yaml").write_text(yaml.safe_dump({"values": values or {1: "polyp"}, "labels": labels or {}}))
    base = {"format": "mask_pairs", "modality": "Endoscopy", "dimension": 2, "task_type": "seg",
            "label_map": "lm.yaml", "license": "test"}
    doc = {"version": 1, "datasets": [{**base, **e} for e in entries]}
    (tmp_path / "sources.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return tmp_path / "sources.yaml"


def scan(reg, ds):
    cfg = PipelineConfig.load(registry=reg, data_root=reg.parent / "data")
    src = load_registry(reg).get(ds)
    return src, cfg, ingest(src, cfg)


def reasons(res):
    return sorted(zip(res.quarantine.column("reason_code").to_pylist(), res.quarantine.column("source_path").to_pylist()))


def test_drive_names_by_image_key(tmp_path):
    """21_training.tif <-> 21_manual1.gif: the regex's group names the mask; a file it does not match is reported."""
    root = tmp_path / "drive"
    for n in (21, 22):
        image(root / "images" / f"{n}_training.tif", seed=n)
        mask(root / "1st_manual" / f"{n}_manual1.gif", [(5, 20, 5, 10 + n)])
    image(root / "images" / "readme_thumbnail.png")
    reg = registry(tmp_path, [{"id": "drive", "root": "drive", "options": {
        "images": "images", "masks": "1st_manual", "image_key": r"^(\d+)_training", "mask_name": "{key}_manual1.gif",
        "mode": "binary"}}])
    src, cfg, res = scan(reg, "drive")
    rows = sorted(res.samples.to_pylist(), key=lambda r: r["name"])
    assert [(r["name"], r["label_ref"]) for r in rows] == [("21_training", "1st_manual/21_manual1.gif"),
                                                          ("22_training", "1st_manual/22_manual1.gif")]
    assert reasons(res) == [("excluded_file", "images/readme_thumbnail.png")]
    assert res.rejected == 0
    std = standardize_dataset(src, cfg, res.samples, cfg.data_root)
    areas = sorted(std.regions.column("area_px").to_pylist())
    assert areas == [15 * (5 + 21), 15 * (5 + 22)]


def test_annotations_beside_their_images_are_excluded_and_reported(tmp_path):
    """HC18 keeps 000_HC.png and 000_HC_Annotation.png in one folder; others name both by case (case_image.png,
    case_Annotation.png) or keep overlays there too: none is scanned as an image, each is one reported row."""
    root = tmp_path / "us"
    for case in ("000_HC", "001_HC"):
        image(root / "training_set" / f"{case}.png")
        mask(root / "training_set" / f"{case}_Annotation.png", [(4, 30, 4, 30)])
    image(root / "training_set" / "000_HC_overlay.png")
    reg = registry(tmp_path, [
        {"id": "hc", "root": "us", "options": {"images": "training_set", "masks": "training_set",
                                               "mask_name": "{stem}_Annotation.png", "mode": "binary",
                                               "exclude": ["*_overlay.png"]}},
        {"id": "cases", "root": "cases", "options": {"images": ".", "masks": ".", "image_key": "^(.+)_image",
                                                     "mask_name": "{key}_Annotation.png", "mode": "binary"}}])
    for case in ("a", "b", "c"):
        image(tmp_path / "cases" / f"{case}_image.png")
        mask(tmp_path / "cases" / f"{case}_Annotation.png", [(2, 9, 2, 9)])
    _, _, res = scan(reg, "hc")
    assert sorted(res.samples.column("name").to_pylist()) == ["000_HC", "001_HC"]
    got = reasons(res)
    assert got == [("excluded_file", "training_set/000_HC_Annotation.png"),
                   ("excluded_file", "training_set/000_HC_overlay.png"),
                   ("excluded_file", "training_set/001_HC_Annotation.png")]
    msgs = res.quarantine.column("reason").to_pylist()
    assert any("mask of 'training_set/000_HC.png'" in m for m in msgs) and any("*_overlay.png" in m for m in msgs)
    assert res.rejected == 0
    _, _, res = scan(reg, "cases")
    assert sorted(res.samples.column("label_ref").to_pylist()) == [f"{c}_Annotation.png" for c in "abc"]
    assert [r for r, _ in reasons(res)] == ["excluded_file"] * 3


def test_glob_masks_one_file_per_instance(tmp_path):
    """masks/<id>/*.png (Data Science Bowl 2018): touching nuclei stay separate instances in mode instances; in
    binary mode several matches are refused with the fix, never merged silently."""
    root = tmp_path / "dsb"
    image(root / "images" / "t1.png")
    mask(root / "masks" / "t1" / "m1.png", [(5, 15, 5, 15)])
    mask(root / "masks" / "t1" / "m2.png", [(5, 15, 15, 25)])  # touches m1
    mask(root / "masks" / "t1" / "m3.png", [(25, 35, 30, 40)])
    opts = {"images": "images", "masks": "masks", "mask_name": "{stem}/*.png"}
    reg = registry(tmp_path, [{"id": "inst", "root": "dsb", "options": {**opts, "mode": "instances"}},
                              {"id": "bin", "root": "dsb", "options": {**opts, "mode": "binary"}}],
                   values={1: "nucleus"})
    src, cfg, res = scan(reg, "inst")
    assert res.samples.num_rows == 1 and res.samples.column("labels").to_pylist() == [["nucleus"]]
    std = standardize_dataset(src, cfg, res.samples, cfg.data_root)
    assert sorted(std.regions.column("area_px").to_pylist()) == [100, 100, 100]
    _, _, res = scan(reg, "bin")
    assert res.samples.num_rows == 0
    assert any("matches 3 mask files" in m for m in res.quarantine.column("reason").to_pylist())


def test_pairs_csv(tmp_path):
    root = tmp_path / "p"
    image(root / "img" / "x.png")
    image(root / "img" / "y.png")
    mask(root / "lab" / "x_seg.png", [(1, 9, 1, 9)])
    (root / "pairs.csv").write_text("img,seg\nimg/x.png,lab/x_seg.png\nimg/y.png,lab/y_seg.png\n")
    reg = registry(tmp_path, [{"id": "pairs", "root": "p", "options": {
        "pairs": "pairs.csv", "image_column": "img", "mask_column": "seg", "mode": "binary"}}])
    _, _, res = scan(reg, "pairs")
    assert res.samples.column("label_ref").to_pylist() == ["lab/x_seg.png"]
    assert [r for r, _ in reasons(res)] == ["missing_file"]


def test_symlinked_dataset_folders(tmp_path):
    """A root made of links to the real image and mask folders (and a root that is itself a link) ingests like the
    real folders and is fingerprinted through the links; a file linked from elsewhere is still refused."""
    real = tmp_path / "store"
    image(real / "images" / "a.png")
    mask(real / "masks" / "a.png", [(3, 12, 3, 12)])
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "images").symlink_to(real / "images")
    (linked / "masks").symlink_to(real / "masks")
    (tmp_path / "rootlink").symlink_to(real)
    image(tmp_path / "elsewhere" / "b.png")
    reg = registry(tmp_path, [{"id": "links", "root": "linked", "options": {"mode": "binary"}},
                              {"id": "rootlink", "root": str(tmp_path / "rootlink"), "options": {"mode": "binary"}},
                              {"id": "real", "root": "store", "options": {"mode": "binary"}}])
    rows = {ds: scan(reg, ds)[2] for ds in ("links", "rootlink", "real")}
    for ds, res in rows.items():
        assert res.samples.column("source_path").to_pylist() == ["images/a.png"], (ds, reasons(res))
        assert res.quarantine.num_rows == 0
    src = load_registry(reg).get("links")
    before = content_fingerprint(src)
    mask(real / "masks" / "a.png", [(3, 13, 3, 12)])  # a change behind the link changes the fingerprint
    assert content_fingerprint(src) != before
    (real / "images" / "b.png").symlink_to(tmp_path / "elsewhere" / "b.png")
    mask(real / "masks" / "b.png", [(3, 12, 3, 12)])
    res = scan(reg, "links")[2]
    assert ("path_traversal", "images/b.png") in reasons(res)


def test_scan_stopping_problem_is_one_row_not_a_traceback(tmp_path):
    image(tmp_path / "d" / "pics" / "a.png")
    reg = registry(tmp_path, [{"id": "dd", "root": "d", "options": {"images": "images"}}])
    _, _, res = scan(reg, "dd")
    assert res.samples.num_rows == 0
    assert sorted(r for r, _ in reasons(res)) == ["missing_file", "no_samples"]


def test_unread_extensions_are_named_when_nothing_is_found(tmp_path):
    (tmp_path / "d" / "images").mkdir(parents=True)
    (tmp_path / "d" / "images" / "a.j2k").write_bytes(b"\0")
    reg = registry(tmp_path, [{"id": "dd", "root": "d", "options": {}}])
    _, _, res = scan(reg, "dd")
    assert any("extension(s) .j2k" in m for m in res.quarantine.column("reason").to_pylist())


def test_labels_init_refuses_a_dataset_with_no_readable_sample(tmp_path):
    image(tmp_path / "d" / "images" / "a.png")
    mask(tmp_path / "d" / "masks" / "a_mask.png", [(1, 5, 1, 5)])
    reg = registry(tmp_path, [{"id": "dd", "root": "d", "label_map": "maps/d.yaml", "options": {"mode": "binary"}}])
    res = CliRunner().invoke(app, ["labels", "init", "--registry", str(reg), "--dataset", "dd"])
    assert res.exit_code == 1
    assert "no readable sample" in res.output and "missing_file" in res.output and "a.png" in res.output
    assert not (tmp_path / "maps" / "d.yaml").exists()
    # once the mask rule is right, the map it writes for a one-value binary mask loads as a valid label map
    doc = yaml.safe_load(reg.read_text())
    doc["datasets"][0]["options"]["mask_name"] = "{stem}_mask.png"
    reg.write_text(yaml.safe_dump(doc))
    res = CliRunner().invoke(app, ["labels", "init", "--registry", str(reg), "--dataset", "dd"])
    assert res.exit_code == 0, res.output
    from pipelines.label_maps import load_label_map
    assert load_label_map(tmp_path / "maps" / "d.yaml").values == {1: "TODO_value_1"}


def test_classification_csv_naming_images_by_id(tmp_path):
    """PH2's labels.csv names images by id (IMD003): path_template builds the path; an exclude pattern leaves
    thumbnails out of an image_folder tree, reported."""
    root = tmp_path / "ph2"
    for i in ("IMD003", "IMD057"):
        image(root / "images" / f"{i}.bmp")
    (root / "labels.csv").write_text("image_id,clinical_diagnosis\nIMD003,common_nevus\nIMD057,melanoma\n")
    image(tmp_path / "folders" / "nevus" / "x.png")
    image(tmp_path / "folders" / "nevus" / "x_thumb.png")
    (tmp_path / "lm.yaml").write_text(yaml.safe_dump({"labels": {"common_nevus": None, "melanoma": None,
                                                                 "nevus": None}}))
    base = {"modality": "Dermoscopy", "dimension": 2, "task_type": "cls", "label_map": "lm.yaml", "license": "t"}
    doc = {"version": 1, "datasets": [
        {**base, "id": "ph2", "root": "ph2", "format": "csv_manifest",
         "options": {"file": "labels.csv", "path_template": "images/{image_id}.bmp", "label_column": "clinical_diagnosis"}},
        {**base, "id": "folders", "root": "folders", "format": "image_folder", "options": {"exclude": ["*_thumb.*"]}}]}
    reg = tmp_path / "sources.yaml"
    reg.write_text(yaml.safe_dump(doc))
    _, _, res = scan(reg, "ph2")
    assert sorted(zip(res.samples.column("source_path").to_pylist(), res.samples.column("labels").to_pylist())) == [
        ("images/IMD003.bmp", ["common_nevus"]), ("images/IMD057.bmp", ["melanoma"])]
    _, _, res = scan(reg, "folders")
    assert res.samples.column("source_path").to_pylist() == ["nevus/x.png"]
    assert reasons(res) == [("excluded_file", "nevus/x_thumb.png")]


@pytest.mark.parametrize("bad", [{"image_key": "no_group"}, {"mask_name": "{stm}.png"}, {"mode": "labels"}])
def test_bad_layout_options_are_registry_problems(tmp_path, bad):
    (tmp_path / "d").mkdir()
    reg = registry(tmp_path, [{"id": "dd", "root": "d", "options": bad}])
    from pipelines.source import RegistryError
    with pytest.raises(RegistryError) as exc:
        load_registry(reg)
    assert "options." in str(exc.value)
