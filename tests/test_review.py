"""`medbench review` end to end on the demo (issue 14, item 7): a seeded HTML sheet of exported items,
a reject decision written through the CLI, and a rebuild that leaves the rejected unit out and says so."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from cli.main import app
from pipelines.validity.reviews import ReviewError, load_decisions, rejected_units
from tests.conftest import built_config


@pytest.fixture(scope="module")
def demo_built(demo_registry, tmp_path_factory):
    for cfg, report in built_config(demo_registry, tmp_path_factory.mktemp("review")):
        assert report.failed == []
        yield cfg


@pytest.mark.slow
def test_reject_an_item_and_rebuild_without_it(demo_built):
    cfg = demo_built
    runner = CliRunner()
    root = ["--data-root", str(cfg.data_root)]
    res = runner.invoke(app, ["review", "sheet", "--n", "6", "--seed", "3", *root])
    assert res.exit_code == 0, res.output
    sheet = cfg.data_root / "review" / "items_seed3.html"
    html = sheet.read_text()
    ids = re.findall(r'<div class="item" id="([0-9a-f]+)">', html)
    assert len(ids) == 6 and html.count("data:image/png;base64,") == 6 and "key: <b>" in html
    first = sheet.read_bytes()
    runner.invoke(app, ["review", "sheet", "--n", "6", "--seed", "3", *root])
    assert sheet.read_bytes() == first  # same seed, same sheet

    bench = pd.read_parquet(cfg.data_root / "tables" / "benchmark.parquet")
    target = bench.set_index("item_id").loc[ids[0]]
    res = runner.invoke(app, ["review", "reject", ids[0], "--reason", "two options are right", *root])
    assert res.exit_code == 0, res.output
    decisions = load_decisions(cfg.data_root / "reviews" / "items.yaml")
    assert decisions[ids[0]]["unit_id"] == target["unit_id"] and decisions[ids[0]]["decision"] == "reject"

    from cli.build import build, export_config_env
    from pipelines.sources.registry import load_registry
    from pipelines.summary import summarize
    export_config_env(cfg, None)  # the autouse fixture cleared the variables the module fixture set
    assert build(cfg, log=lambda m: None).failed == []  # the decision file is newer: the benchmark is rebuilt
    after = pd.read_parquet(cfg.data_root / "tables" / "benchmark.parquet")
    assert target["unit_id"] not in set(after["unit_id"])
    audit = json.loads((cfg.data_root / "tables" / "benchmark_audit.json").read_text())
    assert audit["review_rejected_units"] == 1
    text = summarize(cfg.data_root, load_registry(cfg.registry).ids).render()
    assert "review: 1 unit(s) rejected by reviewers left out" in text
    runner.invoke(app, ["review", "sheet", "--n", "400", "--seed", "3", *root])
    assert ids[0] not in (cfg.data_root / "review" / "items_seed3.html").read_text()


def test_unknown_item_and_bad_decision_file_are_user_errors(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["review", "sheet", "--data-root", str(tmp_path)])
    assert res.exit_code == 1 and "run `medbench build` first" in res.output
    bad = tmp_path / "items.yaml"
    bad.write_text(yaml.safe_dump({"items": {"abc": {"decision": "reject"}}}))
    with pytest.raises(ReviewError, match="items.yaml: item abc: needs 'unit_id'"):
        rejected_units(bad)
    assert rejected_units(tmp_path / "missing.yaml") == set()
