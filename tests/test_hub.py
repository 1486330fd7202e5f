"""Publishing: the real huggingface_hub client against a local Hub server (tests/hub_server.py) on 127.0.0.1.

The benchmark pushed is a small export written by the real exporter (export_all) from a synthetic benchmark
table with real PNG images and a registry written for these tests, so they stay fast and never read the
project's sources.yaml; the card test for ../shared uses the ../shared test registry. Large and binary files go
through the server's git-LFS batch API (huggingface_hub's Xet transfer, its default when hf_xet is installed,
needs a Xet storage service this server does not provide: the tests switch it off as HF_HUB_DISABLE_XET does).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
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
LFS_THRESHOLD = 16 * 1024  # the test server's size rule (the Hub's is 10 MB): the larger TSVs go through LFS
DATASETS = [("hub_ct_organs", "CT", "CC0-1.0"), ("hub_mr_brain", "MRI", "MIT (test data)"),
            ("hub_cxr", "X-ray", "CC-BY-4.0")]
TASKS = [("Organ Recognition - Abdomen", "Gastroenterology and Hepatology", "CT", "Mask level", "mask", "SEG_3D"),
         ("Disease Diagnosis", "Pulmonary Medicine", "X-ray", "Image level", "image", "CLS"),
         ("Cell Recognition", "Hematology", "Microscopy", "Box level", "box", "DET")]
LABELS = ["liver", "spleen", "kidney", "pneumonia", "normal", "neutrophil"]


def write_registry(folder: Path) -> Path:
    """A registry of three datasets for the card (ids, modalities, licences); their folders exist and are empty."""
    entries = []
    for ds, modality, licence in DATASETS:
        (folder / ds).mkdir(parents=True, exist_ok=True)
        (folder / f"{ds}.yaml").write_text(f"dataset: {ds}\nlabels: {{liver: null}}\n")
        entries.append({"id": ds, "root": ds, "format": "image_folder", "modality": modality, "dimension": 2,
                        "task_type": "cls", "label_map": f"{ds}.yaml", "license": licence})
    path = folder / "sources.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "datasets": entries}, sort_keys=False))
    return path


def synthetic_bench(data_root, dataset_ids: list[str], n: int = 18, robustness: int = 0) -> pd.DataFrame:
    """A benchmark table shaped like the real one, with one small real PNG per item; `robustness` perturbed
    copies of test items (their own export config, as the exporter writes them)."""
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
                     "pipeline_version": PIPELINE_VERSION, "seed": 1, "subset": "main", "variant_of": None,
                     "variant": None})
    tests = [r for r in rows if r["split"] == "test"][:robustness]
    for k, r in enumerate(tests):
        rows.append({**r, "index": n + k, "item_id": f"rob{k:04d}", "unit_id": f"robunit{k:04d}",
                     "subset": "robustness", "variant_of": r["item_id"],
                     "variant": json.dumps({"kind": "gaussian_noise", "severity": 1}, sort_keys=True)})
    return pd.DataFrame(rows)


def add_contract_config(folder: Path, name: str, splits: tuple[str, ...]) -> None:
    """A config folder `name/data/{split}-00000-of-00001.parquet` declared in the card, as the export contract
    lays out the consistency and grounding configs (rows: the main config's, so `datasets` reads the features).
    Nothing is added when the exporter already declares the config."""
    from huggingface_hub import DatasetCard
    card = DatasetCard((folder / "README.md").read_text())
    if any(c["config_name"] == name for c in card.data.configs):
        return
    for split in splits:
        target = folder / name / "data" / f"{split}-00000-of-00001.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(sorted((folder / "data").glob(f"{split}-*.parquet"))[0], target)
    card.data.configs = [*card.data.configs, {"config_name": name, "data_files": [
        {"split": s, "path": f"{name}/data/{s}-*.parquet"} for s in splits]}]
    (folder / "README.md").write_text(str(card))


FIGURES = {"analytic_chance": 0.3333, "random_guess": 0.35, "text_only_accuracy": 0.3, "text_only_flagged_units": 1}


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    """(config, export folder) of a small benchmark written by the real exporter, from a temporary registry."""
    from pipelines.export.run import export_all
    base = tmp_path_factory.mktemp("hub")
    root = base / "data"
    cfg = PipelineConfig.load(registry=write_registry(base / "registry"), data_root=root)
    bench = synthetic_bench(root, [ds for ds, _, _ in DATASETS], robustness=4)
    export_all(bench, FIGURES, root, root / "benchmark", cfg)
    return cfg, root / "benchmark"


@pytest.fixture()
def folder(export, tmp_path):
    """A private copy of the export (tests may change it)."""
    return shutil.copytree(export[1], tmp_path / "benchmark")


@pytest.fixture()
def hub(monkeypatch, tmp_path):
    from huggingface_hub import constants
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)  # read once at import: the variable alone is late
    with HubServer(lfs_threshold=LFS_THRESHOLD) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


def load_from_hub(hub: HubServer, configs: list[str], tmp_path: Path) -> dict:
    """`datasets.load_dataset(REPO, config)` for each config in a fresh process whose HF_ENDPOINT is the local
    server (what a user of another Hub does): {config: {split: [rows, first image size, columns,
    answers given]}}."""
    code = ("import json, sys, datasets\n"
            "out = {}\n"
            "for name in sys.argv[2:]:\n"
            "    ds = datasets.load_dataset(sys.argv[1], name)\n"
            "    out[name] = {s: [d.num_rows, list(d[0]['image'].size) if 'image' in d.features else None,"
            " sorted(d.column_names), sum(a is not None for a in d['answer']) if 'answer' in d.features else 0]"
            " for s, d in ds.items()}\n"
            "print(json.dumps(out))\n")
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "reader_hf_home"),
           "HF_DATASETS_CACHE": str(tmp_path / "reader_cache"), "HF_HUB_DISABLE_XET": "1"}
    proc = subprocess.run([sys.executable, "-c", code, REPO, *configs], capture_output=True, text=True, env=env,
                          timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def publisher(log: list | None = None, sleeps: list | None = None, **kw):
    from pipelines.publish import Publisher
    return Publisher(PublishSettings(backoff_s=0.01, **kw), log=(log.append if log is not None else lambda m: None),
                     sleep=(sleeps.append if sleeps is not None else lambda s: None))


def test_push_commits_every_declared_config_through_lfs_and_loads_from_the_hub(export, folder, hub, tmp_path):
    """One commit holds every config the card declares (main, robustness, and the contract's consistency and
    grounding folders), binary and large files as LFS objects, the card naming the repo, nothing of private/;
    `datasets.load_dataset` reads each config from the server."""
    from pipelines.publish import declared_configs
    add_contract_config(folder, "consistency", ("val", "test"))
    add_contract_config(folder, "grounding", ("test",))
    (folder / "private" / "provenance.parquet").write_bytes(b"PRIVATE-PROVENANCE-" + os.urandom(16))
    private = [p.read_bytes() for p in (folder / "private").rglob("*") if p.is_file()]
    assert len(private) >= 2 and any((folder / "private").glob("*answer_key*.parquet"))  # the exporter's key
    report = publisher().push(folder, REPO, private=True)
    commits = hub.commits(REPO)
    assert len(commits) == 1 and report.commit_oid == commits[0].oid
    fingerprint = export[0].fingerprint()
    assert commits[0].message == f"medbench {PIPELINE_VERSION}: benchmark export (config {fingerprint})"
    files = commits[0].files
    # every config the card declares, each split's files, is in the repo
    card = files["README.md"].decode()
    configs = declared_configs(files["README.md"])
    assert {"default", "robustness", "consistency", "grounding"} <= set(configs)
    local = {p.relative_to(folder).as_posix() for p in folder.rglob("*.parquet")}
    for name, patterns in configs.items():
        for pattern in patterns:
            wanted = {r for r in local if fnmatch.fnmatch(r, pattern)}
            assert wanted and wanted <= set(files), (name, pattern)
    assert "robustness/tsv/medbench_ROBUSTNESS_TEST.tsv" in files
    assert {"README.md", "manifest.json", "tsv/medbench_VAL.tsv", "tsv/medbench_TEST.tsv"} <= set(files)
    # the card names the repository it was pushed to; the published manifest hashes what was sent
    assert f'load_dataset("{REPO}")' in card and "ORG/NAME" not in card
    manifest = json.loads(files["manifest.json"])
    assert all(hashlib.sha256(files[k]).hexdigest() == v["sha256"] for k, v in manifest["files"].items())
    assert set(manifest["files"]) == set(files) - {"manifest.json"}
    # private/ stays local: no path, no byte of it in any request (commit, preupload, LFS upload)
    assert not any("private" in f or "answer_key" in f or "provenance" in f for f in files)
    for data in private:
        assert not any(data in r["body"] for r in hub.requests)
    assert not any(b"private/" in r["body"] for r in hub.requests)
    # LFS: binary files and files over the size rule were uploaded to LFS storage, checked, and committed by
    # pointer; the rest travelled inline. Expected sets from the local files, not from the client.
    sizes = {rel: len(data) for rel, data in files.items()}
    expected_lfs = {rel for rel in files if rel.endswith((".parquet", ".png")) or sizes[rel] >= LFS_THRESHOLD}
    assert any(rel.endswith(".tsv") for rel in expected_lfs) and "README.md" not in expected_lfs
    assert hub.stored_as_lfs(REPO) == expected_lfs
    puts = hub.calls("PUT", "/lfs-storage/")
    assert {r["path"].rsplit("/", 1)[1] for r in puts} == {hashlib.sha256(files[r]).hexdigest() for r in expected_lfs}
    assert all(r["auth"] is None for r in puts)  # storage URLs carry no token, as on the Hub
    commit_body = hub.calls("POST", "/commit/")[0]["body"]
    lines = [json.loads(line) for line in commit_body.splitlines()]
    assert {x["value"]["path"] for x in lines if x["key"] == "lfsFile"} == expected_lfs
    assert {x["value"]["path"] for x in lines if x["key"] == "file"} == set(files) - expected_lfs
    assert hub.repos[REPO].private
    assert {r["auth"] for r in hub.requests if "/lfs-storage/" not in r["path"]} == {f"Bearer {TOKEN}"}
    # `datasets` reads every declared config from the server
    loaded = load_from_hub(hub, sorted(configs), tmp_path)
    for name, patterns in configs.items():
        for pattern in patterns:
            split = Path(pattern).name.split("-")[0]
            rows = sum(pq.read_metadata(folder / r).num_rows for r in local if fnmatch.fnmatch(r, pattern))
            n, size, columns, answered = loaded[name][split]
            assert n == rows and size == [24, 24] and "question" in columns, (name, split)
            assert answered == (n if split == "val" else 0), (name, split)  # test answers are withheld
    main = loaded["default"]
    bench = pd.read_parquet(folder / "data")
    assert main["val"][0] == (bench["split"] == "val").sum() and main["test"][0] == (bench["split"] == "test").sum()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["task_categories"] == ["visual-question-answering", "multiple-choice"]


def test_a_declared_config_without_files_stops_the_push(folder, hub):
    from pipelines.publish import PublishError
    add_contract_config(folder, "grounding", ("test",))
    shutil.rmtree(folder / "grounding")
    with pytest.raises(PublishError, match="declares config 'grounding'.*rebuild the export"):
        publisher().push(folder, REPO)
    assert hub.requests == []


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

    from cli.main import app
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

    from cli.build import GLOBAL, _keys
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
    assert meta["configs"].value == "default, robustness"


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
    assert [c["config_name"] for c in meta["configs"]] == ["default", "robustness", "roi_annotations"]
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
    from pipelines.sources.registry import load_registry
    registry = load_registry(SHARED_REGISTRY)
    ids = registry.ids
    from pipelines.export.parquet import write_parquet
    from pipelines.export.tsv import write_tsv
    bench = synthetic_bench(tmp_path, ids, n=3 * len(ids))
    write_parquet(bench, tmp_path, tmp_path / "export", 10**9)
    write_tsv(bench, tmp_path, tmp_path / "export", "medbench")
    card = build_card(bench, FIGURES, registry, FEATURES, "abc123", folder=tmp_path / "export")
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

    from cli.main import app
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
    from pipelines.sources.registry import load_registry
    registry = load_registry(SHARED_REGISTRY)
    bench = synthetic_bench(tmp_path, ["bccd_voc", "totalseg_ct_nifti"], n=6)
    card = build_card(bench, FIGURES, registry, FEATURES, "abc123", folder=None)
    assert card.data.license == "apache-2.0"  # only sources with items decide the licence
    assert "Licence warning" not in card.text
    assert "`kvasir_seg` (research-only (Kvasir-SEG terms))" in card.text


def test_tsvs_written_beside_the_parquet_give_the_same_export(export, tmp_path):
    """With workers, the TSVs are written and hashed in a second process while the Parquet is written: every file
    of the export, the manifest with its checksums included, is byte for byte the one-process export's."""
    from pipelines.export.run import export_all
    cfg, out = export
    two = cfg.model_copy(update={"benchmark": cfg.benchmark.model_copy(update={"render_workers": 2})})
    bench = synthetic_bench(cfg.data_root, [ds for ds, _, _ in DATASETS], robustness=4)
    export_all(bench, FIGURES, cfg.data_root, tmp_path / "benchmark", two)
    files = lambda root: {p.relative_to(root).as_posix(): p.read_bytes()  # noqa: E731
                          for p in sorted(root.rglob("*")) if p.is_file()}
    one, beside = files(out), files(tmp_path / "benchmark")
    assert sorted(one) == sorted(beside) and any(name.endswith(".tsv") for name in one)
    assert [n for n in one if one[n] != beside[n]] == []
    assert len(json.loads(one["manifest.json"])["files"]) == len(one) - 1  # every file but itself
