"""A registry whose datasets yield no item builds, exports nothing broken and says why (no crash in selection).

The two datasets are made empty on purpose, each for its own reason: the CT slice's label map excludes every
label it has, and the brain MR is read with a readability gate its planes cannot pass (a shorter side of at
least 100 px: its planes are 42 to 99 px on the shorter side, the CT slice 128)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from pipelines.config import PROJECT_ROOT
from tests.conftest import built_config


@pytest.fixture(scope="module")
def empty_build(demo_sources, tmp_path_factory):
    root = tmp_path_factory.mktemp("zero")
    doc = yaml.safe_load((PROJECT_ROOT / "sources.yaml").read_text())
    doc["datasets"] = [d for d in doc["datasets"] if d["id"] in ("demo_mr_brain", "demo_ct_dicom")]
    for d in doc["datasets"]:
        d["root"] = str(demo_sources / Path(d["root"]).name)
        d["label_map"] = str(PROJECT_ROOT / d["label_map"])
        if d["id"] == "demo_ct_dicom":  # every label excluded: regions kept, nothing to ask
            lm = yaml.safe_load(Path(d["label_map"]).read_text())
            lm["labels"] = {name: {"exclude": "withheld for this test"} for name in lm["values"].values()}
            d["label_map"] = str(root / "demo_ct_dicom.yaml")
            (root / "demo_ct_dicom.yaml").write_text(yaml.safe_dump(lm, sort_keys=False))
    registry = root / "sources.yaml"
    registry.write_text(yaml.safe_dump(doc, sort_keys=False))
    yield from built_config(registry, root, {"gates": {"min_image_side": 100}})


@pytest.mark.slow
def test_a_registry_without_items_builds_and_says_why(empty_build):
    from pipelines.summary import summarize
    cfg, report = empty_build
    assert report.failed == [], report.reasons
    s = summarize(cfg.data_root, ["demo_mr_brain", "demo_ct_dicom"], cfg.gates)
    lines = s.empty_datasets()
    sl = pq.read_table(cfg.data_root / "tables" / "slices" / "demo_mr_brain.parquet").to_pandas()
    short = sl[["display_width", "display_height"]].min(axis=1)
    long_ = sl[["display_width", "display_height"]].max(axis=1)
    small, elongated = int((short < 100).sum()), int((long_ > 3.0 * short).sum())  # the rules, by hand
    assert small == len(sl) and elongated > 0
    assert lines == ["  demo_ct_dicom: 0 items, as expected: its label map excludes every label it has",
                     "  demo_mr_brain: 0 items, as expected: none of its planes passes the readability gates' image "
                     f"rules (image_too_elongated {elongated}, image_too_small {small})"]
    out = cfg.data_root / "benchmark"
    assert (out / "README.md").is_file() and not list(out.rglob("*.tsv")) and not list(out.rglob("data/*.parquet"))
