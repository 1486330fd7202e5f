"""The reliability corpus, part III, end to end (slow): what only a build can show.

- a same-size, same-mtime edit of a label file changes the benchmark on the next build;
- skip decisions come from the data root, never from a Dagster home shared with another data root;
- a dataset whose source changed after describe goes stale at render time without blocking the others' export;
- the LLM path against a local server that echoes the key in its 401/500 bodies: failed calls are counted,
  the run exits 1 (0 with --allow-llm-failures), and the key appears nowhere under the data root or the
  Dagster home.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from pipelines.config import PROJECT_ROOT, PipelineConfig
from tests.openai_server import OpenAIServer
from tests.conftest import private_registry

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
DATASETS = ("demo_polyp", "demo_cxr_findings")


@pytest.fixture(scope="module")
def built(demo_registry, tmp_path_factory):
    """Two small demo datasets built once in their own Dagster home; the tests below change them in turn."""
    from cli.build import build, export_config_env
    folder = tmp_path_factory.mktemp("reliability")
    reg = private_registry(demo_registry, folder, DATASETS)
    home = folder / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((PROJECT_ROOT / "dagster.yaml").read_text())
    keep = {k: os.environ.get(k) for k in ("DAGSTER_HOME", "MEDBENCH_REGISTRY", "MEDBENCH_DATA_ROOT", "OPENAI_API_KEY")}
    os.environ["DAGSTER_HOME"] = str(home)
    os.environ.pop("OPENAI_API_KEY", None)
    try:
        cfg = PipelineConfig.load(registry=reg, data_root=folder / "data")
        export_config_env(cfg, None)
        report = build(cfg, log=lambda m: None, workers=1)
        assert report.succeeded == [*sorted(DATASETS), "global"], report.reasons
        yield cfg, folder
    finally:
        for k, v in keep.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def point_env(monkeypatch, cfg: PipelineConfig) -> None:
    """Runs read their settings from the environment (MedbenchResource); conftest clears it for every test."""
    monkeypatch.setenv("MEDBENCH_REGISTRY", str(cfg.registry))
    monkeypatch.setenv("MEDBENCH_DATA_ROOT", str(cfg.data_root))


def test_skip_decisions_come_from_the_data_root(built, monkeypatch):
    """A second data root on the same Dagster home is empty: everything in it is stale, nothing 'up to date'
    (the instance has every partition materialized). A deleted table makes its dataset stale again; the built
    root itself is up to date."""
    from assets.changes import plan_changes
    from assets.definitions import PER_DATASET_KEYS
    from pipelines.sources.registry import load_registry
    cfg, folder = built
    point_env(monkeypatch, cfg)
    instance = dg.DagsterInstance.get()
    registry = load_registry(cfg.registry)
    assert plan_changes(instance, registry, cfg, PER_DATASET_KEYS).stale == []
    empty = cfg.model_copy(update={"data_root": folder / "other_root"})
    assert plan_changes(instance, registry, empty, PER_DATASET_KEYS).stale == sorted(DATASETS)
    regions = cfg.data_root / "tables" / "regions" / "demo_polyp.parquet"
    kept = regions.read_bytes()
    regions.unlink()
    try:
        assert plan_changes(instance, registry, cfg, PER_DATASET_KEYS).stale == ["demo_polyp"]
    finally:
        regions.write_bytes(kept)
    from assets.changes import sync_registry
    logs: list[str] = []
    plan = sync_registry(instance, registry, empty, PER_DATASET_KEYS, log=logs.append)
    assert plan.stale == sorted(DATASETS) and not any("up to date" in m for m in logs)


def test_same_size_same_mtime_edit_changes_the_benchmark(built, monkeypatch):
    """Swap the findings of two images in the manifest: same size, the old mtime restored (as `cp -p` or
    `rsync -t` leave it). The next build re-reads the dataset and the benchmark's keys follow the file."""
    from cli.build import build
    cfg, folder = built
    point_env(monkeypatch, cfg)
    manifest = folder / "cxr_findings_phantom" / "manifest.csv"
    before_bench = (cfg.data_root / "tables" / "benchmark.parquet").read_bytes()
    st = manifest.stat()
    lines = manifest.read_text().splitlines()
    rows = [ln.split(",") for ln in lines]
    i, j = 1, next(k for k in range(2, len(rows)) if rows[k][1] != rows[1][1])
    rows[i][1], rows[j][1] = rows[j][1], rows[i][1]
    manifest.write_text("\n".join(",".join(r) for r in rows) + "\n")
    os.utime(manifest, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert manifest.stat().st_size == st.st_size and manifest.stat().st_mtime_ns == st.st_mtime_ns
    report = build(cfg, log=lambda m: None, workers=1)
    assert report.succeeded == ["demo_cxr_findings", "global"]
    samples = pq.read_table(cfg.data_root / "tables" / "raw_samples" / "demo_cxr_findings.parquet").to_pandas()
    truth = {r[0]: sorted(r[1].split(";")) for r in rows[1:]}  # re-derived from the edited file
    got = {Path(p).name: sorted(labels) for p, labels in zip(samples["source_path"], samples["labels"])}
    assert got == truth
    assert (cfg.data_root / "tables" / "benchmark.parquet").read_bytes() != before_bench
    bench = pq.read_table(cfg.data_root / "tables" / "benchmark.parquet").to_pandas()
    by_image = samples.set_index("sample_id")["source_path"].map(lambda p: Path(p).name).to_dict()
    slices = pq.read_table(cfg.data_root / "tables" / "slices" / "demo_cxr_findings.parquet").to_pandas()
    image_of = slices.set_index("image_id")["sample_id"].map(by_image).to_dict()
    swapped = {rows[i][0], rows[j][0]}
    cxr = bench[(bench["dataset_id"] == "demo_cxr_findings") & bench["image_id"].map(image_of).isin(swapped)]
    findings = {f for labels in truth.values() for f in labels}
    for row in cxr.itertuples():  # a key that names findings names those the edited file gives the image
        named = {x.strip() for x in str(row.answer_label).replace(";", ",").split(",")}
        if named <= findings:
            assert named <= set(truth[image_of[row.image_id]]), (row.question, row.answer_label)


def test_a_stale_dataset_does_not_block_the_others_export(built, monkeypatch):
    """The polyp source changes after describe; only the render and export steps run. Its items keep the last
    good image; without one they are left out; the findings dataset exports either way."""
    from assets.definitions import ALL_ASSETS, defs
    from pipelines.summary import summarize
    cfg, folder = built
    point_env(monkeypatch, cfg)
    data = cfg.data_root
    bench = pq.read_table(data / "tables" / "benchmark.parquet").to_pandas()
    polyp_items = set(bench.loc[bench["dataset_id"] == "demo_polyp", "item_id"])
    assert polyp_items and set(bench["dataset_id"]) == set(DATASETS)
    img = sorted((folder / "polyp_phantom" / "images").iterdir())
    originals = {p: p.read_bytes() for p in img}
    for p in img:  # every polyp image changes after it was described
        arr = np.asarray(Image.open(p).convert("RGB")).copy()
        Image.fromarray(255 - arr).save(p)
    keys = [dg.AssetKey(k) for k in ("rendered_items", "review_sheets", "benchmark_exports")]

    def export() -> dg.ExecuteInProcessResult:
        return dg.materialize(ALL_ASSETS, selection=keys, instance=dg.DagsterInstance.get(),
                              resources=defs.resources, raise_on_error=False)

    def exported() -> pd.DataFrame:
        return pd.concat([pd.read_parquet(p) for p in sorted((data / "benchmark" / "data").glob("*.parquet"))])

    try:
        res = export()
        assert res.success
        rendered = pq.read_table(data / "tables" / "rendered_items.parquet").to_pandas()
        assert polyp_items <= set(rendered["item_id"])  # the last good images, kept
        stale = json.loads((data / "state" / "stale_datasets.json").read_text())
        assert set(stale) == {"demo_polyp"} and stale["demo_polyp"]["reused"] == len(polyp_items)
        assert "differs from the one described" in stale["demo_polyp"]["reason"]
        assert set(exported()["dataset_id"]) == set(DATASETS)
        text = summarize(data, list(DATASETS)).render()
        assert "STALE dataset demo_polyp" in text and f"{len(polyp_items)} item(s) keep their last good image" in text
        # no last good rendering: the polyp items are left out, the findings items still export
        shutil.rmtree(data / "rendered")
        (data / "tables" / "rendered_items.parquet").unlink()
        res = export()
        assert res.success
        checks = {e.check_name: e for e in res.get_asset_check_evaluations()}
        assert not checks["every_item_rendered"].passed
        assert checks["every_item_rendered"].severity == dg.AssetCheckSeverity.WARN
        out = exported()
        assert set(out["dataset_id"]) == {"demo_cxr_findings"} and len(out) > 0
        assert json.loads((data / "state" / "stale_datasets.json").read_text())["demo_polyp"]["left_out"] == \
            len(polyp_items)
    finally:
        for p, b in originals.items():
            p.write_bytes(b)


# -- secrets: the LLM path against a server that echoes the key -----------------------------------------

SECRET = "sk-medbench-PLANTED-4f1d9c2e7b"


def test_llm_key_never_stored_and_failures_counted(demo_registry, tmp_path, monkeypatch):
    from cli.main import app
    reg = private_registry(demo_registry, tmp_path, ("demo_cxr_findings",))
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text((PROJECT_ROOT / "dagster.yaml").read_text())
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    with OpenAIServer(lambda body: "{}", fail_with=500,
                      fail_message="upstream failed for {auth}; retry with api_key={key}") as server:
        server.script = [(401, "Incorrect API key provided: {key}. Authorization: {auth}")] * 3
        conf = tmp_path / "conf.yaml"
        conf.write_text(yaml.safe_dump({"llm": {"base_url": server.base_url, "max_retries": 0,
                                                "timeout_s": 10, "cache_dir": str(tmp_path / "data" / "llm_cache")}}))
        args = ["build", "--registry", str(reg), "--data-root", str(tmp_path / "data"), "--config", str(conf),
                "--workers", "1"]
        first = CliRunner().invoke(app, args)
        assert first.exit_code == 1, first.output
        assert "LLM template request(s) could not be made" in first.output and "--allow-llm-failures" in first.output
        asked = len(server.requests)
        assert asked > 0 and all(r["auth"] == f"Bearer {SECRET}" for r in server.requests)  # the key was sent
        second = CliRunner().invoke(app, [*args, "--select", "question_templates", "--allow-llm-failures"])
        assert second.exit_code == 0, second.output
        assert len(server.requests) > asked
    calls = json.loads((tmp_path / "data" / "state" / "llm_calls.json").read_text())
    q = calls["question_templates"]
    assert q["requests"] > 0 and q["failed"] == q["requests"]
    assert f"LLM question_templates: {q['requests']} request(s), {q['failed']} failed" in second.output
    # the key, echoed in every 401/500 body (and in a response header), is nowhere in storage
    found = [str(p) for root in (tmp_path / "data", home) for p in root.rglob("*")
             if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert found == []
    redacted = [p for p in home.rglob("*") if p.is_file() and b"[REDACTED]" in p.read_bytes()]
    assert redacted, "the error path was exercised and stored, redacted"


def test_the_cross_dataset_runs_are_ordered_and_the_writers_run_alone():
    """runs_of: every cross-dataset key in exactly one run, no key of the first run needs one of the second, and
    the stages that write the published files (export, ROI annotations, Hub push) are all in the second."""
    from assets.definitions import ANNOTATE, GLOBAL, PUBLISH, defs
    from cli.build import _keys, runs_of
    keys = _keys(GLOBAL, None) + _keys(ANNOTATE, None) + _keys(PUBLISH, None)
    runs = runs_of(keys)
    assert len(runs) == 2 and sorted(k for r in runs for k in r) == sorted(keys)
    graph = defs.resolve_asset_graph()
    later = set(runs[1])
    assert not {p for k in runs[0] for p in graph.get(k).parent_keys} & later
    names = {k.to_user_string() for k in later}
    assert {"benchmark_exports", "roi_exports", "hub_push"} <= names and "rendered_items" not in names
    assert runs_of(_keys(GLOBAL, ["benchmark_exports"])) == [[dg.AssetKey("benchmark_exports")]]
