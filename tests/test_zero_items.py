"""A registry whose datasets yield no item builds, exports nothing broken and says why (no crash in selection)."""

from __future__ import annotations

from pathlib import Path

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
    registry = root / "sources.yaml"
    registry.write_text(yaml.safe_dump(doc, sort_keys=False))
    yield from built_config(registry, root)


@pytest.mark.slow
def test_a_registry_without_items_builds_and_says_why(empty_build):
    from pipelines.summary import summarize
    cfg, report = empty_build
    assert report.failed == [], report.reasons
    s = summarize(cfg.data_root, ["demo_mr_brain", "demo_ct_dicom"])
    lines = s.empty_datasets()
    assert lines == ["  demo_ct_dicom: 0 items, as expected: its label map excludes every label it has",
                     "  demo_mr_brain: 0 items, as expected: none of its images passes the readability gates "
                     "(too small or too elongated)"]
    out = cfg.data_root / "benchmark"
    assert (out / "README.md").is_file() and not list(out.rglob("*.tsv")) and not list(out.rglob("data/*.parquet"))
