"""Registry validation: every error names the file, the entry and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipelines.source import RegistryError
from pipelines.sources.registry import load_registry


def entry(**over) -> dict:
    base = {"id": "ds_one", "root": "data", "format": "image_folder", "modality": "X-ray", "dimension": 2,
            "task_type": "cls", "label_map": "lm.yaml", "license": "CC0-1.0"}
    base.update(over)
    return base


def write(tmp_path: Path, *entries: dict, label_map: str = "labels: {a: null}\n") -> Path:
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "lm.yaml").write_text(label_map)
    path = tmp_path / "sources.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "datasets": list(entries)}))
    return path


def problems(path: Path) -> list:
    with pytest.raises(RegistryError) as exc:
        load_registry(path)
    assert str(path) in str(exc.value)
    return exc.value.problems


def test_valid_registry_resolves_paths_relative_to_file(tmp_path):
    reg = load_registry(write(tmp_path, entry()))
    src = reg.get("ds_one")
    assert src.root == (tmp_path / "data").resolve()
    assert src.label_map.names == {"a"}


@pytest.mark.parametrize("override,needle,fix", [
    ({"format": "dicomm"}, "unknown format 'dicomm'", "use one of"),
    ({"root": "nowhere"}, "does not exist", "fix 'root'"),
    ({"label_map": "missing.yaml"}, "label map", "create it"),
    ({"modality": "Sonar"}, "unknown modality 'Sonar'", "use one of"),
    ({"id": "Bad,Id"}, "is not a slug", "lowercase"),
    ({"dimension": 4}, "dimension", "registry fields"),
    ({"options": {"nope": 1}}, "options.nope", "reader options"),
    ({"group_rule": {"kind": "filename_regex"}}, "needs 'pattern'", "capture group"),
    ({"group_rule": {"kind": "csv_column"}}, "needs 'column'", "column"),
])
def test_each_error_names_entry_and_fix(tmp_path, override, needle, fix):
    found = problems(write(tmp_path, entry(**override)))
    assert any(needle in p.message and fix in p.fix for p in found), found
    assert all(p.entry == str(override.get("id", "ds_one")) for p in found)


def test_duplicate_ids_reported_once(tmp_path):
    found = problems(write(tmp_path, entry(), entry()))
    assert [p.message for p in found if "duplicate" in p.message] == ["duplicate id 'ds_one' (2 entries)"]


def test_invalid_label_map_is_reported(tmp_path):
    found = problems(write(tmp_path, entry(), label_map="values: {x: 1}\n"))
    assert any("is invalid" in p.message for p in found)


def test_all_problems_reported_together(tmp_path):
    found = problems(write(tmp_path, entry(format="nope"), entry(id="ds_two", root="gone")))
    assert {p.entry for p in found} == {"ds_one", "ds_two"}


def test_missing_registry_file(tmp_path):
    found = problems(tmp_path / "absent.yaml")
    assert "MEDBENCH_REGISTRY" in found[0].fix


def test_env_var_switches_registry(tmp_path, monkeypatch):
    from pipelines.config import PipelineConfig
    path = write(tmp_path, entry())
    monkeypatch.setenv("MEDBENCH_REGISTRY", str(path))
    assert PipelineConfig.load().registry == path
    assert load_registry(PipelineConfig.load().registry).ids == ["ds_one"]


def test_project_demo_registry_is_valid(demo_registry):
    reg = load_registry(demo_registry)
    assert {reg.get(d).entry.task_type for d in reg.ids} == {"cls", "mcls", "det", "seg"}
    assert {reg.get(d).entry.dimension for d in reg.ids} == {2, 3}
