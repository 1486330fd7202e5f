"""Label maps and registries are checked when loaded: unknown keys and values name the file, key and fix;
modality aliases resolve; the `accept:` route does not break the option pools."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from pipelines.label_maps import LabelMapError, load_label_map
from pipelines.modalities import MODALITIES, resolve_modality
from pipelines.candidates.options import PoolKey, build_pools, pools_table
from pipelines.source import RegistryError
from pipelines.sources.registry import load_registry
from pipelines.vocab.frame import vocab_frame


def _lm(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "lm.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


@pytest.mark.parametrize("text, needle", [
    ("labels:\n  liver: {ct_windw: liver}\n", "unknown key 'ct_windw' at labels.liver.ct_windw"),
    ("labls: {liver: null}\n", "unknown key 'labls'"),
    ("labels:\n  liver: {ct_window: livr}\n", "unknown ct_window 'livr'; use one of: bone, brain, liver"),
    ("labels:\n  liver: {task: Organs}\n", "unknown task 'Organs'"),
    ("department: Radiology\nlabels: {liver: null}\n", "unknown department 'Radiology'"),
    ("semantic_type: organs\n", "unknown semantic_type 'organs'"),
])
def test_unknown_keys_and_values_name_file_key_and_fix(tmp_path, text, needle):
    path = _lm(tmp_path, text)
    with pytest.raises(LabelMapError) as exc:
        load_label_map(path)
    msg = str(exc.value)
    assert str(path) in msg and needle in msg and "fix:" in msg


def test_configured_ct_windows_are_allowed(tmp_path):
    path = _lm(tmp_path, "labels:\n  lesion: {ct_window: abdomen_narrow}\n")
    with pytest.raises(LabelMapError):
        load_label_map(path)
    assert load_label_map(path, {"abdomen_narrow"}).spec("lesion").ct_window == "abdomen_narrow"


def test_non_utf8_label_map_and_registry_are_clear_errors(tmp_path):
    path = _lm(tmp_path, "labels: {caf\xe9: null}\n".encode("latin-1"))
    with pytest.raises(LabelMapError, match="is not UTF-8.*save the file as UTF-8"):
        load_label_map(path)
    reg = tmp_path / "sources.yaml"
    reg.write_bytes("version: 1\n# r\xe9sum\xe9\ndatasets: []\n".encode("latin-1"))
    with pytest.raises(RegistryError, match="not UTF-8") as exc:
        load_registry(reg)
    assert "save the file as UTF-8" in str(exc.value)


@pytest.mark.parametrize("alias, expected", [
    ("MR", "MRI"), ("mri", "MRI"), ("T1", "T1 weighted MRI"), ("t2", "T2 weighted MRI"), ("CXR", "X-ray"),
    ("X-Ray", "X-ray"), ("US", "Ultrasound"), ("FLAIR", "FLAIR MRI"), ("Sonar", None),
])
def test_modality_aliases(alias, expected):
    assert resolve_modality(alias) == expected
    assert all(resolve_modality(m) == m for m in MODALITIES)


def test_registry_resolves_modality_alias(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "lm.yaml").write_text("labels: {a: null}\n")
    entry = {"id": "ds_one", "root": "data", "format": "image_folder", "modality": "MR", "dimension": 2,
             "task_type": "cls", "label_map": "lm.yaml", "license": "CC0-1.0"}
    (tmp_path / "sources.yaml").write_text(yaml.safe_dump({"version": 1, "datasets": [entry]}))
    assert load_registry(tmp_path / "sources.yaml").get("ds_one").entry.modality == "MRI"


def test_accepted_label_without_task_does_not_break_pools(tmp_path):
    """An `accept:`ed label has no task unless pinned; through Parquet its task used to come back as NaN."""
    rows = [
        {"dataset_id": "a", "raw_label": "zorblax", "canonical_label": "zorblax", "status": "accepted",
         "task": None, "modality": "CT", "granularities": ["mask"]},
        {"dataset_id": "a", "raw_label": "liver", "canonical_label": "liver", "status": "mesh",
         "task": "Organ Recognition - Abdomen", "modality": "CT", "granularities": ["mask"]},
        {"dataset_id": "b", "raw_label": "kidney", "canonical_label": "kidney", "status": "mesh",
         "task": "Organ Recognition - Abdomen", "modality": "CT", "granularities": ["mask", "contour"]},
    ]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "vocab.parquet")
    table = pq.read_table(tmp_path / "vocab.parquet")
    assert vocab_frame(table)["task"].tolist()[0] is None
    pools = build_pools(table.to_pandas())  # the raw pandas frame, NaN and all
    assert pools == {PoolKey("dataset:a", "CT", "Organ Recognition - Abdomen", "mask"): ["liver"],
                     PoolKey("dataset:b", "CT", "Organ Recognition - Abdomen", "mask"): ["kidney"]}
    assert len(pools_table(pools)) == 2
