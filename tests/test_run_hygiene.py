"""One dataset's failure does not block the others; unresolved labels are named and left out
(--strict blocks); stale staging folders go; one build per data root; files follow the umask;
the summary counts only registered datasets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from pipelines.config import PROJECT_ROOT, PipelineConfig
from pipelines.housekeeping import BuildLocked, build_lock, remove_stale_staging
from pipelines.run_state import failed_datasets
from pipelines.storage import atomic_write_bytes, atomic_write_table
from pipelines.summary import summarize


def _polyp_registry(tmp_path: Path, demo_sources: Path) -> PipelineConfig:
    """Three copies of the demo polyp data: one resolves, one has an unknown label, one will fail."""
    docs = []
    for ds, name in (("polyp_ok", "polyp"), ("polyp_odd", "zorblax thing"), ("polyp_broken", "polyp")):
        lm = tmp_path / f"{ds}.yaml"
        lm.write_text(yaml.safe_dump({"values": {1: name}}))
        docs.append({"id": ds, "root": str(demo_sources / "polyp_phantom"), "format": "mask_pairs",
                     "modality": "Endoscopy", "dimension": 2, "task_type": "seg", "label_map": str(lm),
                     "license": "test", "options": {"mode": "binary"}})
    path = tmp_path / "sources.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "datasets": docs}))
    return PipelineConfig.load(registry=path, data_root=tmp_path / "data")


@pytest.mark.slow
def test_failed_dataset_left_out_and_unresolved_named(tmp_path, demo_sources, dagster_home):
    from cli.build import build, export_config_env
    cfg = _polyp_registry(tmp_path, demo_sources)
    export_config_env(cfg, None)
    # a real write failure in one partition: its regions table path is taken by a folder
    trap = cfg.data_root / "tables" / "regions" / "polyp_broken.parquet"
    trap.mkdir(parents=True)
    report = build(cfg, log=lambda m: None)
    assert report.failed == ["polyp_broken"], report.reasons
    assert "standardized" in report.reasons["polyp_broken"]
    assert set(report.succeeded) == {"polyp_ok", "polyp_odd", "global"}
    assert "polyp_broken" in failed_datasets(cfg.data_root)
    vocab = pq.read_table(cfg.data_root / "tables" / "label_vocab.parquet").to_pandas()
    assert set(vocab["dataset_id"]) == {"polyp_ok", "polyp_odd"}  # the broken one's stale regions unused
    assert vocab.set_index("dataset_id").loc["polyp_odd", "status"] == "unresolved"
    qa = pq.read_table(cfg.data_root / "tables" / "qa_candidates.parquet").to_pandas()
    assert "polyp_odd" not in set(qa["dataset_id"])
    import dagster as dg
    skipped = dg.DagsterInstance.get().get_latest_materialization_event(dg.AssetKey("qa_candidates"))
    assert "unresolved_label" in skipped.asset_materialization.metadata["skipped"].value  # left out, counted
    check = dg.DagsterInstance.get().event_log_storage.get_latest_asset_check_execution_by_key(
        [dg.AssetCheckKey(dg.AssetKey("label_vocab"), "unresolved_labels")])
    evaluation = next(iter(check.values())).event.dagster_event.event_specific_data
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    assert "polyp_odd: zorblax thing" in evaluation.description
    text = summarize(cfg.data_root, ["polyp_ok", "polyp_odd", "polyp_broken"]).render()
    assert "FAILED dataset polyp_broken: standardized" in text
    assert "polyp_odd: zorblax thing" in text and "benchmark:" in text

    # strict: the same unresolved label stops the run at label_vocab
    export_config_env(cfg, None, strict=True)
    strict = build(cfg, select=["label_vocab", "option_pools"], log=lambda m: None)
    assert strict.failed == ["global"] and "unresolved_labels" in strict.reasons["global"]

    # once the dataset builds again, it is no longer recorded as failed
    os.environ.pop("MEDBENCH_STRICT")
    trap.rmdir()
    again = build(cfg, select=["raw_samples", "regions", "slices"], datasets=["polyp_broken"],
                  log=lambda m: None)
    assert again.failed == [] and failed_datasets(cfg.data_root) == {}


def test_summary_counts_only_registered_datasets(tmp_path):
    root = tmp_path / "data"
    for ds, n in (("kept", 3), ("removed", 40)):
        atomic_write_table(pa.table({"x": list(range(n))}), root / "tables" / "raw_samples" / f"{ds}.parquet")
    s = summarize(root, ["kept"])
    assert s.samples == {"kept": 3} and s.tables["raw_samples"] == 3


def test_stale_staging_removed_live_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = [tmp_path / "images" / f".ds.staging-{dead}", tmp_path / "images" / f".ds.old-{dead}",
             tmp_path / "benchmark" / "x" / f".benchmark.staging-{dead}"]
    live = tmp_path / "images" / f".other.staging-{os.getpid()}"
    for p in [*stale, live]:
        (p / "sub").mkdir(parents=True)
    removed = remove_stale_staging(tmp_path)
    assert sorted(removed) == sorted(stale)
    assert live.exists() and not any(p.exists() for p in stale)


def test_second_build_on_same_root_refused(tmp_path):
    code = ("import sys, time; sys.path.insert(0, %r)\n"
            "from pipelines.housekeeping import build_lock\n"
            "with build_lock(%r):\n    print('held', flush=True); time.sleep(30)\n") % (str(PROJECT_ROOT), str(tmp_path))
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(BuildLocked, match=f"pid {holder.pid}.*another --data-root"):
            with build_lock(tmp_path):
                pass
    finally:
        holder.kill()
        holder.wait()
    with build_lock(tmp_path):  # released when the holder died
        pass


def test_files_follow_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "a.bin", b"x")
        atomic_write_table(pa.table({"x": [1]}), tmp_path / "t.parquet")
        os.umask(0o027)
        atomic_write_bytes(tmp_path / "b.bin", b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.bin").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "t.parquet").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.bin").stat().st_mode & 0o777 == 0o640


runner = CliRunner()


@pytest.mark.parametrize("args, needle", [
    (["build", "--select", "nope"], "unknown stage or asset nope; stages: ingest"),
    (["build", "--dataset", "nope"], "dataset(s) nope not in the registry; registered: demo_blood_smear"),
    (["summary", "--registry", "missing.yaml"], "registry file not found"),
    (["select", "missing.parquet", "--out", "x.tsv"], "missing.parquet does not exist"),
])
def test_cli_user_errors_are_one_clear_message(args, needle, demo_registry, tmp_path):
    from cli.main import app
    extra = ["--registry", str(demo_registry), "--data-root", str(tmp_path)] if args[0] == "build" else []
    res = runner.invoke(app, args + extra)
    assert res.exit_code == 1, res.output
    assert needle in res.output and "Traceback" not in res.output
    assert not isinstance(res.exception, Exception) or isinstance(res.exception, SystemExit)


def test_cli_version_and_untruncated_plain_check(demo_registry, tmp_path):
    from cli.main import app
    from pipelines import __version__
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == f"medbench {__version__}"
    res = runner.invoke(app, ["sources", "check", "--registry", str(demo_registry), "--data-root", str(tmp_path)])
    assert res.exit_code == 0
    assert "[red]" not in res.output and "…" not in res.output
    assert "demo_cxr_pneumonia\timage_folder\tX-ray" in res.output


def test_runs_left_started_by_a_killed_build_are_marked_failed(dagster_home):
    import dagster as dg
    from dagster._core.storage.dagster_run import DagsterRun

    from cli.build import mark_orphan_runs
    instance = dg.DagsterInstance.get()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    runs = {pid: instance.add_run(DagsterRun(job_name="__ephemeral_asset_job__", run_id=f"{i:08d}-0000-0000-0000-000000000000",
                                             status=dg.DagsterRunStatus.STARTED,
                                             tags={"medbench/build": "1", "medbench/pid": pid}))
            for i, pid in enumerate((dead, str(os.getpid())))}
    assert mark_orphan_runs(instance) == 1
    assert instance.get_run_by_id(runs[dead].run_id).status == dg.DagsterRunStatus.FAILURE
    assert instance.get_run_by_id(runs[str(os.getpid())].run_id).status == dg.DagsterRunStatus.STARTED


def test_settings_fingerprint_ignores_where_things_live():
    """Two checkouts with the same settings stamp the same config hash on their exports: paths (registry, data
    root, LLM cache) are not settings of the benchmark; a setting that changes items is."""
    from pipelines.config import PipelineConfig
    a = PipelineConfig.load(registry="/a/sources.yaml", data_root="/a/data", llm={"cache_dir": "/a/cache"})
    b = PipelineConfig.load(registry="/b/sources.yaml", data_root="/b/data", llm={"cache_dir": "/b/cache"})
    assert a.fingerprint() == b.fingerprint()
    assert PipelineConfig.load(seed=1).fingerprint() != PipelineConfig.load(seed=2).fingerprint()


def test_settings_fingerprint_ignores_worker_counts():
    """Worker counts change how fast a build runs, never what it writes (bench.compare_builds, the real-size and
    demo builds at 1 and 2 workers): retuning them must not make every dataset look changed."""
    from pipelines.config import PipelineConfig
    base = PipelineConfig.load()
    many = PipelineConfig.load(ingest={"workers": 16}, standardize={"workers": 16}, benchmark={"render_workers": 16},
                               annotate={"workers": 16}, generators={"workers": 16})
    assert base.fingerprint() == many.fingerprint()
    assert PipelineConfig.load(render={"png_level": 6}).fingerprint() != base.fingerprint()  # other bytes
