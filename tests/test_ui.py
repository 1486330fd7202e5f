"""Browser test: headless Chromium against `dagster dev` (started here on 127.0.0.1) on a built instance, and a
rebuild of every dataset partition launched as one backfill the way the UI launches it."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import yaml

from bench.ui_backfill import backfill_page, launch_rebuild, wait_backfill
from bench.ui_screenshot import dagster_dev, find_chromium, rendered_text, screenshot

CHROMIUM = find_chromium()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (Debian: apt-get install chromium)")
def test_asset_graph_and_benchmark_page(demo_registry, tmp_path, monkeypatch, dagster_home, demo_sources):
    from cli.build import build
    from pipelines.config import PipelineConfig
    doc = yaml.safe_load(demo_registry.read_text())
    doc["datasets"] = [d for d in doc["datasets"] if d["id"] in ("demo_blood_smear", "demo_cxr_pneumonia")]
    (tmp_path / "sources.yaml").write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("MEDBENCH_REGISTRY", str(tmp_path / "sources.yaml"))
    monkeypatch.setenv("MEDBENCH_DATA_ROOT", str(tmp_path / "data"))
    assert build(PipelineConfig.load(), log=lambda m: None).failed == []
    out = Path(os.environ.get("MEDBENCH_SCREENSHOT_DIR") or tmp_path / "shots")
    with dagster_dev(_free_port()) as base:
        graph = screenshot(f"{base}/asset-groups", out / "asset_graph.png", CHROMIUM)
        page = screenshot(f"{base}/assets/benchmark", out / "benchmark.png", CHROMIUM)
        text = rendered_text(f"{base}/assets/benchmark", CHROMIUM)
        # rebuilding every dataset from the UI: one backfill (the materialize dialog's mutation), run by the daemon
        backfill_id = launch_rebuild(base)
        record = wait_backfill(base, backfill_id, timeout=900)
        backfill = screenshot(backfill_page(base, backfill_id), out / "backfill.png", CHROMIUM)
        backfill_text = rendered_text(backfill_page(base, backfill_id), CHROMIUM)
    assert record["isAssetBackfill"] and record["numPartitions"] == 2, record
    assert record["status"].startswith("COMPLETED") and record["status"] != "COMPLETED_FAILED", record
    runs = record["runs"]
    assert runs and all(r["status"] == "SUCCESS" for r in runs), runs
    tags = [{t["key"]: t["value"] for t in r["tags"]} for r in runs]
    assert all(t.get("dagster/backfill") == backfill_id for t in tags)
    assert sorted(t["dagster/partition"] for t in tags if "dagster/partition" in t) == \
        ["demo_blood_smear", "demo_cxr_pneumonia"]  # one run per dataset partition
    assert len(runs) == 3  # and one run of the cross-dataset assets after them
    assert "demo_blood_smear" in backfill_text or "Partitions" in backfill_text
    for shot in (graph, page, backfill):
        assert shot.read_bytes()[:4] == b"\x89PNG" and shot.stat().st_size > 20_000, shot
    # what a user reads on the benchmark page: the code location, the automation condition, the checks
    for expected in ("medbench", "eager", "benchmark", "Parquet"):
        assert expected in text, expected
