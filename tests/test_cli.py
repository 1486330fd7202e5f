"""The medbench command line."""

from __future__ import annotations

import yaml
from typer.testing import CliRunner

from cli.main import app

runner = CliRunner()


def test_help_lists_subcommands():
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0
    for cmd in ("sources", "build", "demo", "summary"):
        assert cmd in res.output
    assert runner.invoke(app, ["no-such-command"]).exit_code != 0  # an unknown command is refused, not ignored


def test_sources_check_ok_and_scan(demo_registry, tmp_path):
    res = runner.invoke(app, ["sources", "check", "--registry", str(demo_registry), "--data-root", str(tmp_path),
                              "--scan"])
    assert res.exit_code == 0, res.output
    ids = [d["id"] for d in yaml.safe_load(demo_registry.read_text())["datasets"]]  # counted from the file itself
    assert f"{len(ids)} dataset(s) OK" in res.output
    assert all(ds in res.output for ds in ids)  # one row per registered dataset


def test_sources_check_warns_about_registrations_of_one_folder(demo_registry, tmp_path):
    doc = yaml.safe_load(demo_registry.read_text())
    twin = dict(next(d for d in doc["datasets"] if d["id"] == "demo_polyp"), id="demo_polyp_again")
    doc["datasets"].append(twin)
    reg = tmp_path / "sources.yaml"
    reg.write_text(yaml.safe_dump(doc))
    res = runner.invoke(app, ["sources", "check", "--registry", str(reg), "--data-root", str(tmp_path / "d")])
    assert res.exit_code == 0, res.output
    assert "warning: demo_polyp and demo_polyp_again read the same folder" in res.output
    plain = runner.invoke(app, ["sources", "check", "--registry", str(demo_registry), "--data-root", str(tmp_path)])
    assert "read the same folder" not in plain.output


def test_sources_check_reports_problems(tmp_path):
    bad = tmp_path / "sources.yaml"
    bad.write_text(yaml.safe_dump({"version": 1, "datasets": [
        {"id": "x_1", "root": "nope", "format": "zip", "modality": "CT", "dimension": 3, "task_type": "seg",
         "label_map": "nope.yaml", "license": "?"}]}))
    res = runner.invoke(app, ["sources", "check", "--registry", str(bad)])
    assert res.exit_code == 1
    assert "unknown format 'zip'" in res.output and "fix:" in res.output and "x_1" in res.output
