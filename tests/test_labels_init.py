"""A new user's path, from the README alone: registry entries for three kinds of dataset (a multi-class
CT NIfTI label volume, a chest X-ray CSV using the 'CXR' modality alias, chest X-rays with lung masks),
`medbench labels init` writes each label map, `sources check --scan` accepts them, and the build
produces a benchmark; labels init leaves unresolved labels marked TODO and the build leaves their
items out instead of stopping."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from cli.main import app
from pipelines.config import PipelineConfig
from tests.conftest import SHARED, needs_shared

pytestmark = needs_shared
runner = CliRunner()


def _cli(*args: str) -> str:
    res = runner.invoke(app, list(args))
    assert res.exit_code == 0, res.output
    return res.output


@pytest.fixture()
def new_user(tmp_path):
    """Copies of ../shared laid out as a user's own data, and a registry written as the README shows."""
    ct = tmp_path / "ct"
    for sub in ("images", "labels"):
        (ct / sub).mkdir(parents=True)
        shutil.copy(SHARED / "totalseg_ct_nifti" / sub / "ct_sm.nii.gz", ct / sub)
    shutil.copy(SHARED / "totalseg_ct_nifti" / "labels.json", ct)
    cxr = tmp_path / "cxr"
    (cxr / "png").mkdir(parents=True)
    lines = (SHARED / "pneumoniamnist_cxr_cls" / "test_labels.csv").read_text().splitlines()[:17]
    (cxr / "labels.csv").write_text("\n".join(lines) + "\n")
    lungs = tmp_path / "lungs"
    (lungs / "images").mkdir(parents=True)
    (lungs / "masks").mkdir()
    for line in lines[1:]:
        name = line.split(",")[0]
        shutil.copy(SHARED / "pneumoniamnist_cxr_cls" / "test_png" / name, cxr / "png")
        shutil.copy(SHARED / "pneumoniamnist_cxr_cls" / "test_png" / name, lungs / "images")
        img = cv2.imread(str(lungs / "images" / name), cv2.IMREAD_GRAYSCALE)
        mask = np.zeros_like(img)
        h, w = img.shape
        mask[h // 5: 4 * h // 5, w // 8: 7 * w // 16] = 255  # two lung fields
        mask[h // 5: 4 * h // 5, 9 * w // 16: 7 * w // 8] = 255
        cv2.imwrite(str(lungs / "masks" / name), mask)
    entries = [
        {"id": "my_ct", "root": "ct", "format": "volume_pairs", "modality": "CT", "dimension": 3,
         "task_type": "seg", "label_map": "label_maps/my_ct.yaml", "license": "Apache-2.0"},
        {"id": "my_cxr", "root": "cxr", "format": "csv_manifest", "modality": "CXR", "dimension": 2,
         "task_type": "cls", "label_map": "label_maps/my_cxr.yaml", "license": "CC-BY-4.0",
         "options": {"file": "labels.csv", "path_column": "filename", "image_root": "png",
                     "label_column": "label_name"}},
        {"id": "my_lungs", "root": "lungs", "format": "mask_pairs", "modality": "X-ray", "dimension": 2,
         "task_type": "seg", "label_map": "label_maps/my_lungs.yaml", "license": "test",
         "options": {"images": "images", "masks": "masks", "mode": "binary"}},
    ]
    (tmp_path / "my_sources.yaml").write_text(yaml.safe_dump({"version": 1, "datasets": entries}))
    return tmp_path / "my_sources.yaml"


@pytest.mark.slow
def test_register_three_datasets_with_labels_init(new_user, tmp_path, dagster_home):
    reg, data = str(new_user), str(tmp_path / "data")
    out = _cli("labels", "init", "--registry", reg, "--dataset", "my_ct", "--data-root", data)
    assert "TODO" in out
    ct_map = (tmp_path / "label_maps" / "my_ct.yaml").read_text()
    assert '5: "liver"' in ct_map and "MeSH D008099" in ct_map  # value names from labels.json, MeSH suggestion
    assert "iliopsoas_left" in ct_map and "TODO: unresolved" in ct_map
    _cli("labels", "init", "--registry", reg, "--dataset", "my_cxr", "--data-root", data)
    assert "MeSH D011014" in (tmp_path / "label_maps" / "my_cxr.yaml").read_text()
    _cli("labels", "init", "--registry", reg, "--dataset", "my_lungs", "--value", "1=lung", "--data-root", data)
    lungs = yaml.safe_load((tmp_path / "label_maps" / "my_lungs.yaml").read_text())
    assert lungs["values"] == {1: "lung"}
    res = runner.invoke(app, ["labels", "init", "--registry", reg, "--dataset", "my_lungs"])
    assert res.exit_code == 1 and "--force" in res.output  # never overwrites silently

    check = _cli("sources", "check", "--registry", reg, "--data-root", data, "--scan")
    assert "3 dataset(s) OK" in check and "my_cxr\tcsv_manifest\tX-ray" in check

    from cli.build import build, export_config_env
    cfg = PipelineConfig.load(registry=new_user, data_root=tmp_path / "data")
    export_config_env(cfg, None)
    report = build(cfg, log=lambda m: None)
    assert report.failed == [], report.reasons
    vocab = pq.read_table(cfg.data_root / "tables" / "label_vocab.parquet").to_pandas()
    assert set(vocab["dataset_id"]) == {"my_ct", "my_cxr", "my_lungs"}
    assert "iliopsoas" in " ".join(vocab[vocab["status"] == "unresolved"]["raw_label"])
    qa = pq.read_table(cfg.data_root / "tables" / "qa_candidates.parquet").to_pandas()
    assert {"my_ct", "my_cxr"} <= set(qa["dataset_id"])
    assert not qa["answer_label"].str.contains("iliopsoas").any()
    assert (cfg.data_root / "benchmark" / "manifest.json").exists()
