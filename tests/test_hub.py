"""Publishing: the real huggingface_hub client against a local Hub server (tests/hub_server.py) on 127.0.0.1.

The benchmark pushed is a small export written by the real exporter (export_all) from a synthetic benchmark
table with real PNG images, so these tests stay fast; the card test for ../shared uses the real registry.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from pipelines import PIPELINE_VERSION
from pipelines.config import PipelineConfig, PublishSettings
from tests.conftest import SHARED_REGISTRY, needs_shared
from tests.hub_server import HubServer

TOKEN = "hf_SecretTestToken0123456789abcdef"
REPO = "medbench-org/medbench-demo"
TASKS = [("Organ Recognition - Abdomen", "Gastroenterology and Hepatology", "CT", "Mask level", "mask", "SEG_3D"),
         ("Disease Diagnosis", "Pulmonary Medicine", "X-ray", "Image level", "image", "CLS"),
         ("Cell Recognition", "Hematology", "Microscopy", "Box level", "box", "DET")]
LABELS = ["liver", "spleen", "kidney", "pneumonia", "normal", "neutrophil"]


def synthetic_bench(data_root, dataset_ids: list[str], n: int = 18) -> pd.DataFrame:
    """A benchmark table shaped like the real one, with one small real PNG per item."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        task, dept, modality, pg, gran, orig = TASKS[i % len(TASKS)]
        ds = dataset_ids[i % len(dataset_ids)]
        path = f"prompts/{ds}/item_{i:03d}.png"
        (data_root / path).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(data_root / path)
        options = [LABELS[(i + k) % len(LABELS)] for k in range(3)]
        group = i // 2
        rows.append({"index": i, "item_id": f"item{i:04d}", "unit_id": f"unit{i:04d}",
                     "question": f"This is a {modality} image. Which structure is marked?",
                     "A": options[0], "B": options[1], "C": options[2], "D": None, "E": None, "answer": "A",
                     "answer_label": options[0], "multi_answer": False, "n_options": 3, "clinical_vqa_task": task,
                     "department": dept, "perceptual_granularity": pg, "granularity": gran, "modality": modality,
                     "gmai_modality": modality, "original_task": orig, "semantic_type": "organ",
                     "group_id": f"g{group:03d}", "image_id": f"img{i:04d}", "prompt_id": f"p{i:04d}",
                     "image_path": path, "template_id": "t1", "pool_size": 3.0,
                     "split": "val" if group % 3 == 0 else "test", "dataset_id": ds, "source_path": f"src/{i}.png",
                     "pipeline_version": PIPELINE_VERSION, "seed": 1})
    return pd.DataFrame(rows)


FIGURES = {"analytic_chance": 0.3333, "random_guess": 0.35, "text_only_accuracy": 0.3, "text_only_flagged_units": 1}


@pytest.fixture(scope="module")
def export(demo_registry, tmp_path_factory):
    """(config, export folder) of a small benchmark written by the real exporter."""
    from pipelines.export.run import export_all
    root = tmp_path_factory.mktemp("hub") / "data"
    cfg = PipelineConfig.load(registry=demo_registry, data_root=root)
    bench = synthetic_bench(root, ["demo_ct_abdomen", "demo_mr_brain", "demo_cxr_pneumonia"])
    export_all(bench, FIGURES, root, root / "benchmark", cfg)
    return cfg, root / "benchmark"


@pytest.fixture()
def folder(export, tmp_path):
    """A private copy of the export (tests may change it)."""
    return shutil.copytree(export[1], tmp_path / "benchmark")


@pytest.fixture()
def hub(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    with HubServer() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


def publisher(log: list | None = None, sleeps: list | None = None, **kw):
    from pipelines.publish import Publisher
    return Publisher(PublishSettings(backoff_s=0.01, **kw), log=(log.append if log is not None else lambda m: None),
                     sleep=(sleeps.append if sleeps is not None else lambda s: None))


def test_push_commits_public_files_once_and_loads_with_datasets(export, folder, hub, tmp_path):
    import datasets
    from huggingface_hub import snapshot_download
    report = publisher().push(folder, REPO, private=True)
    commits = hub.commits(REPO)
    assert len(commits) == 1 and report.commit_oid == commits[0].oid
    fingerprint = export[0].fingerprint()
    assert commits[0].message == f"medbench {PIPELINE_VERSION}: benchmark export (config {fingerprint})"
    files = set(commits[0].files)
    assert {"README.md", "manifest.json", "tsv/medbench_VAL.tsv", "tsv/medbench_TEST.tsv"} <= files
    assert any(f.startswith("data/val-") for f in files) and any(f.startswith("data/test-") for f in files)
    assert (folder / "private" / "test_answer_key.parquet").is_file()  # present locally...
    assert not any("private" in f or "answer_key" in f for f in files)  # ...never sent
    assert b"test_answer_key" not in commits[0].files["manifest.json"]
    assert hub.repos[REPO].private
    assert {r["auth"] for r in hub.requests} == {f"Bearer {TOKEN}"}
    preupload = hub.calls("POST", "/preupload/")
    assert len(preupload) == 1 and hub.calls("POST", "/paths-info/")

    local = snapshot_download(REPO, repo_type="dataset", endpoint=hub.url, local_dir=tmp_path / "dl")
    ds = datasets.load_dataset(str(local), cache_dir=str(tmp_path / "cache"))
    bench = pd.read_parquet(folder / "data")
    assert set(ds) == {"val", "test"}
    assert ds["val"].num_rows == (bench["split"] == "val").sum() and ds["test"].num_rows == (bench["split"] == "test").sum()
    img = ds["val"][0]["image"]
    assert isinstance(img, Image.Image) and img.size == (24, 24)
    assert all(a is None for a in ds["test"]["answer"])
    card = yaml.safe_load((Path(local) / "README.md").read_text().split("---")[1])
    assert card["task_categories"] == ["visual-question-answering", "multiple-choice"]
    assert [s["num_examples"] for s in card["dataset_info"][0]["splits"]] == [ds["val"].num_rows, ds["test"].num_rows]


def test_second_push_of_unchanged_benchmark_uploads_nothing(folder, hub):
    publisher().push(folder, REPO)
    n_requests = len(hub.requests)
    again = publisher().push(folder, REPO)
    assert again.uploaded == [] and again.commit_oid is None and len(again.unchanged) == len(again.files)
    assert len(hub.commits(REPO)) == 1
    later = hub.requests[n_requests:]
    assert not [r for r in later if "/preupload/" in r["path"] or "/commit/" in r["path"]]
    # one changed file and one removed file: one commit holding exactly those two changes
    (folder / "summary" / "summary.md").write_text("changed\n")
    (folder / "tsv" / "medbench_TEST.tsv").unlink()
    third = publisher().push(folder, REPO)
    last = hub.commits(REPO)[-1]
    assert third.uploaded == ["manifest.json", "summary/summary.md"]  # the published manifest lists one file less
    assert "summary/summary.md" in last.added and last.deleted == ["tsv/medbench_TEST.tsv"]
    assert len(hub.commits(REPO)) == 2


def test_dry_run_lists_files_and_contacts_nothing(folder, hub):
    from typer.testing import CliRunner

    from assets.cli import app
    res = CliRunner().invoke(app, ["push", "--repo-id", REPO, "--dry-run", "--folder", str(folder)],
                             env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "README.md" in res.output and "data/val-00000-of-00001.parquet" in res.output
    assert "private" not in res.output and "answer_key" not in res.output
    assert hub.requests == []


def test_token_never_reaches_errors_or_logs(folder, hub, caplog):
    from pipelines.publish import PublishError
    hub.fail("POST", "/commit/", 500, times=99, echo_auth=True)
    log: list[str] = []
    caplog.set_level(logging.DEBUG)
    with pytest.raises(PublishError) as info:
        publisher(log=log, max_retries=2).push(folder, REPO)
    text = str(info.value)
    assert "commit failed" in text and "[REDACTED]" in text and TOKEN not in text
    assert info.value.__cause__ is None and info.value.__context__ is None
    assert len(hub.calls("POST", "/commit/")) == 3  # first try + 2 retries, all echoing the header
    assert TOKEN not in "\n".join(log) and TOKEN not in caplog.text


def test_dagster_event_log_holds_no_token(folder, hub, tmp_path):
    import dagster as dg

    from assets.publish import hub_push
    from assets.resources import MedbenchResource
    shutil.copytree(folder, tmp_path / "root" / "benchmark")
    config = tmp_path / "publish.yaml"
    config.write_text(yaml.safe_dump({"publish": {"repo_id": REPO, "max_retries": 1, "backoff_s": 0.01}}))
    hub.fail("POST", "/commit/", 500, times=99, echo_auth=True)
    instance = dg.DagsterInstance.ephemeral()
    res = dg.materialize([hub_push], instance=instance, raise_on_error=False, resources={
        "medbench": MedbenchResource(config_file=str(config), data_root=str(tmp_path / "root"))})
    assert not res.success
    events = "\n".join(repr(e) for e in instance.all_logs(res.run_id))
    assert "commit failed" in events and "[REDACTED]" in events
    assert TOKEN not in events


def test_hub_push_asset_commits_and_is_opt_in(folder, hub, tmp_path):
    import dagster as dg

    from assets.build import GLOBAL, _keys
    from assets.publish import hub_push
    from assets.resources import MedbenchResource
    assert "hub_push" not in {k.to_user_string() for k in _keys(GLOBAL, None)}  # not in a default build
    shutil.copytree(folder, tmp_path / "root" / "benchmark")
    instance = dg.DagsterInstance.ephemeral()
    plain = dg.materialize([hub_push], instance=instance, resources={
        "medbench": MedbenchResource(data_root=str(tmp_path / "root"))})
    assert plain.success and plain.asset_materializations_for_node("hub_push") == [] and hub.requests == []
    config = tmp_path / "publish.yaml"
    config.write_text(yaml.safe_dump({"publish": {"repo_id": REPO}}))
    res = dg.materialize([hub_push], instance=instance, resources={
        "medbench": MedbenchResource(config_file=str(config), data_root=str(tmp_path / "root"))})
    meta = res.asset_materializations_for_node("hub_push")[0].metadata
    assert meta["commit"].value == hub.commits(REPO)[0].oid and meta["unchanged"].value == 0


def test_retries_with_backoff_on_429_and_5xx(folder, hub):
    hub.fail("POST", "/paths-info/", 429, times=2)
    hub.fail("POST", "/commit/", 503, times=1)
    log, sleeps = [], []
    report = publisher(log=log, sleeps=sleeps).push(folder, REPO)
    assert report.commit_oid == hub.commits(REPO)[0].oid and len(hub.commits(REPO)) == 1
    assert len(hub.calls("POST", "/paths-info/")) == 4  # 2 refused, 1 ok, 1 after the refused commit
    assert sleeps == [0.01, 0.02, 0.04] and sum("HTTP 429" in m for m in log) == 2


def test_roi_annotations_become_a_second_config(folder, hub, tmp_path):
    """The public ROI config (images embedded) is declared in the card and loads with decoded images; the exam's
    annotations kept under private/ never leave the machine."""
    import datasets
    from huggingface_hub import snapshot_download

    from pipelines.imageio import encode_png
    features = datasets.Features({"image": datasets.Image(), "image_id": datasets.Value("string"),
                                  "rois": [{"name": datasets.Value("string"),
                                            "relations": [{"structure": datasets.Value("string")}]}]})
    rows = [{"image": {"bytes": encode_png(np.full((8, 8, 3), 40 * i, np.uint8)), "path": f"i{i}.png"},
             "image_id": f"i{i}", "rois": [{"name": "liver", "relations": [{"structure": "right kidney"}]}]}
            for i in range(3)]
    (folder / "roi_annotations" / "data").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=features.arrow_schema),
                   folder / "roi_annotations" / "data" / "train-00000-of-00001.parquet")
    (folder / "private").mkdir(exist_ok=True)
    pq.write_table(pa.table({"image_id": ["secret"], "name": ["liver"]}), folder / "private" / "roi_annotations.parquet")
    publisher().push(folder, REPO)
    sent = hub.commits(REPO)[0].files
    card = sent["README.md"].decode()
    assert not any(f.startswith("private/") for f in sent)
    meta = yaml.safe_load(card.split("---")[1])
    assert [c["config_name"] for c in meta["configs"]] == ["default", "roi_annotations"]
    local = snapshot_download(REPO, repo_type="dataset", endpoint=hub.url, local_dir=tmp_path / "dl")
    roi = datasets.load_dataset(str(local), "roi_annotations", cache_dir=str(tmp_path / "cache"))
    assert set(roi) == {"train"} and roi["train"].num_rows == 3
    first = roi["train"][1]
    assert first["image"].size == (8, 8) and np.asarray(first["image"])[0, 0, 0] == 40
    assert first["rois"][0]["relations"][0]["structure"] == "right kidney"
    default = datasets.load_dataset(str(local), "default", cache_dir=str(tmp_path / "cache"))
    assert set(default) == {"val", "test"}


def test_bad_folder_and_repo_id_are_clear_errors(tmp_path, hub):
    from pipelines.publish import PublishError
    with pytest.raises(PublishError, match="not a benchmark export"):
        publisher().push(tmp_path, REPO)
    with pytest.raises(PublishError, match="ORG/NAME"):
        publisher().push(tmp_path, "no-namespace")


def test_redact_scrubs_bearer_and_hub_tokens():
    from pipelines.publish import redact
    text = f"Authorization: Bearer {TOKEN}; other hf_abcdefghijklmnop; bearer xyz.123"
    out = redact(text, TOKEN)
    assert TOKEN not in out and "hf_abcdefghijklmnop" not in out and "xyz.123" not in out


def test_licence_choice():
    from pipelines.export.card import SourceLicence, card_licence
    parse = SourceLicence.parse
    assert card_licence([parse("a", "CC0-1.0 (generated)"), parse("b", "MIT (x)")]) == {"license": "mit"}
    assert card_licence([parse("a", "Apache-2.0"), parse("b", "CC-BY-4.0")]) == {"license": "cc-by-4.0"}
    other = card_licence([parse("a", "MIT"), parse("b", "research-only (Kvasir-SEG terms)")])
    assert other["license"] == "other" and other["license_name"] == "medbench-research-only"
    assert "research-only (Kvasir-SEG terms)" in other["license_details"]
    assert parse("c", "whatever terms").restriction == "unrecognised"


@needs_shared
def test_card_for_shared_registry_lists_licences_and_warnings(tmp_path):
    from pipelines.export.card import build_card
    from pipelines.export.parquet import FEATURES
    from pipelines.registry import load_registry
    registry = load_registry(SHARED_REGISTRY)
    ids = registry.ids
    bench = synthetic_bench(tmp_path, ids, n=3 * len(ids))
    card = build_card(bench, FIGURES, registry, FEATURES, "abc123", folder=None)
    data = card.data.to_dict()
    assert data["license"] == "other" and data["license_name"] == "medbench-research-only"
    assert data["size_categories"] == ["n<1K"] and "multiple-choice" in data["task_categories"]
    assert data["pretty_name"] and "medical" in data["tags"]
    assert sorted(data["source_datasets"]) == sorted(f"extended|{i}" for i in ids)
    assert data["configs"][0]["data_files"][0] == {"split": "val", "path": "data/val-*.parquet"}
    text = card.text
    for ds in ids:
        assert registry.get(ds).entry.license in text
    assert "Licence warning" in text and "`kvasir_seg`: research-only" in text and "non-commercial" in text
    assert "Kvasir-SEG: a segmented polyp dataset" in text and "TotalSegmentator" in text and "MedMNIST v2" in text
    for heading in ("## Construction", "## Validity audit", "## Load and evaluate", "## Citation"):
        assert heading in text
    assert "| analytic chance | 0.3333 |" in text and "| groups in both splits | 0 |" in text
    assert "load_dataset" in text and "VLMEvalKit" in text and "2408.03361" in text


def test_local_file_ids_match_the_hub_algorithms(tmp_path):
    import hashlib

    from huggingface_hub.utils.sha import git_hash

    from pipelines.publish import LocalFile
    data = bytes(range(256)) * 5000  # several read chunks
    (tmp_path / "f.bin").write_bytes(data)
    for f in (LocalFile("f.bin", source=tmp_path / "f.bin"), LocalFile("f.bin", data=data)):
        assert f.blob_id == git_hash(data) and f.sha256 == hashlib.sha256(data).hexdigest() and f.size == len(data)


def test_cli_push_then_up_to_date_and_redacted_failure(folder, hub, tmp_path):
    from typer.testing import CliRunner

    from assets.cli import app
    args = ["push", "--repo-id", REPO, "--folder", str(folder)]
    first = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert first.exit_code == 0, first.output
    assert f"commit {hub.commits(REPO)[0].oid}" in first.output
    second = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert second.exit_code == 0 and "up to date: nothing to commit" in second.output
    (folder / "summary" / "summary.md").write_text("changed\n")
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"publish": {"max_retries": 0}}))
    hub.fail("POST", "/commit/", 500, times=1, echo_auth=True)
    failed = CliRunner().invoke(app, [*args, "--config", str(config)], env={"COLUMNS": "200"})
    assert failed.exit_code == 1 and "commit failed" in failed.output and TOKEN not in failed.output


@needs_shared
def test_card_names_registered_sources_without_items(tmp_path):
    from pipelines.export.card import build_card
    from pipelines.export.parquet import FEATURES
    from pipelines.registry import load_registry
    registry = load_registry(SHARED_REGISTRY)
    bench = synthetic_bench(tmp_path, ["bccd_voc", "totalseg_ct_nifti"], n=6)
    card = build_card(bench, FIGURES, registry, FEATURES, "abc123", folder=None)
    assert card.data.license == "apache-2.0"  # only sources with items decide the licence
    assert "Licence warning" not in card.text
    assert "`kvasir_seg` (research-only (Kvasir-SEG terms))" in card.text
