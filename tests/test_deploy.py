"""deploy/dagster.yaml against a real PostgreSQL started by the test (a throwaway cluster on 127.0.0.1)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import dagster as dg
import pytest

from pipelines.config import PROJECT_ROOT, PipelineConfig


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


PG_BIN = _pg_bin()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_db_user(cmd: list[str]) -> list[str]:
    """initdb refuses root: run the server as the Debian `postgres` user when we are root."""
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


def _run(cmd: list[str], timeout: int = 120) -> None:
    proc = subprocess.run(_as_db_user(cmd), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd[0]} failed: {proc.stdout}{proc.stderr}"


@pytest.fixture()
def postgres_url():
    if PG_BIN is None:
        pytest.skip("PostgreSQL binaries not found (Debian: apt-get install postgresql)")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.skip("running as root without runuser: cannot start PostgreSQL as an unprivileged user")
    base = Path(tempfile.mkdtemp(prefix="medbench-pg-"))  # under /tmp: the postgres user must reach it
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    data, port = base / "data", _free_port()
    try:
        _run([str(PG_BIN / "initdb"), "-D", str(data), "-U", "dagster", "--auth=trust", "--no-sync", "-E", "UTF8"])
        _run([str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(base / "log"), "-w", "-o",
              f"-h 127.0.0.1 -p {port} -k {base} -F", "start"])
        _run([str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "dagster", "dagster"])
        yield f"postgresql+psycopg2://dagster@127.0.0.1:{port}/dagster"
    finally:
        subprocess.run(_as_db_user([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
                       capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.slow
def test_demo_runs_on_postgres(postgres_url, demo_registry, tmp_path, monkeypatch, demo_sources):
    """The deploy instance config loads with the locked drivers; a parallel build stores its runs in Postgres."""
    pytest.importorskip("dagster_postgres", reason="install the postgres extra (uv sync --extra postgres)")
    import yaml

    from assets.build import build
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(PROJECT_ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    doc = yaml.safe_load(demo_registry.read_text())
    doc["datasets"] = [d for d in doc["datasets"] if d["id"] in ("demo_polyp", "demo_cxr_pneumonia")]
    (tmp_path / "sources.yaml").write_text(yaml.safe_dump(doc))
    for var, value in (("DAGSTER_HOME", home), ("MEDBENCH_PG_URL", postgres_url),
                       ("MEDBENCH_REGISTRY", tmp_path / "sources.yaml"), ("MEDBENCH_DATA_ROOT", tmp_path / "data")):
        monkeypatch.setenv(var, str(value))
    started = time.time()
    report = build(PipelineConfig.load(), log=lambda m: None, workers=2)
    assert report.failed == [] and report.succeeded == ["demo_cxr_pneumonia", "demo_polyp", "global"]
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        runs = instance.get_run_records()
        assert len(runs) == 3 and all(r.dagster_run.status == dg.DagsterRunStatus.SUCCESS for r in runs)
        assert sorted(instance.get_dynamic_partitions("datasets")) == ["demo_cxr_pneumonia", "demo_polyp"]
    assert time.time() - started < 300


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_partition_steps_run_on_a_celery_worker(demo_registry, tmp_path, monkeypatch, dagster_home, demo_sources):
    """deploy/celery.yaml with its folders moved under tmp: a real worker process executes the steps."""
    pytest.importorskip("dagster_celery", reason="install the celery extra (uv sync --extra celery)")
    import signal
    import sys

    import yaml

    from assets.cluster import celery_dataset_job
    text = (PROJECT_ROOT / "deploy" / "celery.yaml").read_text().replace("/tmp/medbench-celery", str(tmp_path / "celery"))
    for sub in ("queue", "processed", "results", "control"):
        (tmp_path / "celery" / sub).mkdir(parents=True)
    config = tmp_path / "celery.yaml"
    config.write_text(text)
    doc = yaml.safe_load(demo_registry.read_text())
    doc["datasets"] = [d for d in doc["datasets"] if d["id"] == "demo_polyp"]
    (tmp_path / "sources.yaml").write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("MEDBENCH_REGISTRY", str(tmp_path / "sources.yaml"))
    monkeypatch.setenv("MEDBENCH_DATA_ROOT", str(tmp_path / "data"))
    # two processes write this run's events: one consolidated SQLite file, created before the worker starts,
    # avoids the per-run database that both would otherwise create (and migrate) at once
    with open(dagster_home / "dagster.yaml", "a") as fh:
        fh.write(f"event_log_storage:\n  module: dagster._core.storage.event_log\n"
                 f"  class: ConsolidatedSqliteEventLogStorage\n  config:\n    base_dir: {dagster_home / 'events'}\n")
    with dg.DagsterInstance.get() as instance:
        instance.get_event_records(dg.EventRecordsFilter(dg.DagsterEventType.RUN_SUCCESS), limit=1)
    bin_dir = Path(sys.executable).parent  # the worker command starts `celery` from PATH
    worker = subprocess.Popen([str(bin_dir / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app",
                               "-y", str(config), "--", "--concurrency", "1", "--pool", "solo"],
                              cwd=PROJECT_ROOT, env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        with dg.DagsterInstance.get() as instance:
            instance.add_dynamic_partitions("datasets", ["demo_polyp"])
            result = dg.execute_job(dg.reconstructable(celery_dataset_job), instance,
                                    run_config=yaml.safe_load(text), tags={"dagster/partition": "demo_polyp"})
            assert result.success
            assert (tmp_path / "data" / "tables" / "regions" / "demo_polyp.parquet").exists()
            engine = [e for e in result.all_events if e.event_type_value == "STEP_START"]
            assert engine, "steps ran"
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            out, _ = worker.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            out, _ = worker.communicate()
    assert b"succeeded" in out or b"Task" in out, out.decode(errors="replace")[-2000:]
