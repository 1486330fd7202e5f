"""docs/deploy.md's walkthrough run verbatim (PostgreSQL from Debian, a Celery worker on the filesystem broker)
in a copy of the project, and deploy/k8s's Helm values loaded as a K8sRunLauncher instance whose Job for a run is
checked against a local stand-in for the Kubernetes API."""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import dagster as dg
import pytest

from pipelines.config import PROJECT_ROOT


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


DEPLOY_DOC = PROJECT_ROOT / "docs" / "deploy.md"


def walkthrough_blocks() -> list[str]:
    """The shell blocks of the doc's 'Try it on one machine' section, in order, exactly as written."""
    section = DEPLOY_DOC.read_text().split("## Try it on one machine")[1].split("\n## ")[0]
    return re.findall(r"```bash\n(.*?)```", section, re.S)


def project_copy(dest: Path) -> Path:
    """The project's files as a fresh clone would have them (tracked and new, nothing ignored): no .venv, no data."""
    listed = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=PROJECT_ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        if (PROJECT_ROOT / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PROJECT_ROOT / rel, dest / rel)
    if (PROJECT_ROOT / ".tools" / "bin" / "uv").exists():  # the Makefile's uv, bootstrapped by `make test`
        (dest / ".tools").symlink_to(PROJECT_ROOT / ".tools")
    return dest


def processes_of(folder: Path) -> list[int]:
    """Live processes (not zombies) this walkthrough started: their command line or environment names `folder`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            text = (proc / "cmdline").read_bytes() + (proc / "environ").read_bytes()
        except OSError:  # gone meanwhile
            continue
        if str(folder).encode() in text:
            found.append(int(proc.name))
    return found


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_deploy_walkthrough_runs_verbatim(tmp_path, monkeypatch):
    """`make install-deploy` gives all deployment extras at once; the demo builds with its runs in Postgres and
    prints no ERROR; a partition's steps run on a Celery worker; the last block stops everything it started."""
    if PG_BIN is None:
        pytest.skip("PostgreSQL binaries not found (Debian: apt-get install postgresql; .ci/run installs it)")
    blocks = walkthrough_blocks()
    assert len(blocks) == 5 and blocks[0].startswith("make install-deploy")
    project = project_copy(tmp_path / "project")
    base = Path(tempfile.mkdtemp(prefix="medbench-deploy-"))  # under /tmp: the postgres user must reach it
    base.chmod(0o755)
    deploy = base / "run"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEDBENCH_", "DAGSTER_", "VIRTUAL_ENV"))}
    env.update(DEPLOY=str(deploy), PGPORT=str(_free_port()), UV_LINK_MODE="symlink",
               UV_CACHE_DIR=os.environ.get("UV_CACHE_DIR", str(PROJECT_ROOT / ".uv-cache")))
    started = time.time()
    try:
        run = subprocess.run(["bash", "-euo", "pipefail", "-c", "\n".join(blocks[:-1])], cwd=project, env=env,
                             capture_output=True, text=True, timeout=1300)
        assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
        out = run.stdout + run.stderr
        # one install, every deployment extra in it
        probe = subprocess.run([str(project / ".venv" / "bin" / "python"), "-c",
                                "import dagster_postgres, dagster_celery, dagster_k8s"], capture_output=True, text=True)
        assert probe.returncode == 0, probe.stderr
        assert "ERROR" not in out and "FAILED" not in out  # the demo ends without an error on Postgres too
        assert (deploy / "data" / "benchmark" / "manifest.json").is_file()
        monkeypatch.setenv("MEDBENCH_PG_URL", f"postgresql+psycopg2://dagster@127.0.0.1:{env['PGPORT']}/dagster")
        with dg.DagsterInstance.from_ref(dg.InstanceRef.from_dir(str(deploy / "dagster_home"))) as instance:
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            runs = [r.dagster_run for r in instance.get_run_records()]
            assert runs and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
            celery_runs = [r for r in runs if r.job_name == "dataset_job_celery"]
            assert [r.tags.get("dagster/partition") for r in celery_runs] == ["demo_polyp"]
            assert len(instance.get_dynamic_partitions("datasets")) == 8
        worker_log = (deploy / "worker.log").read_text()
        assert "Task execute_plan" in worker_log and "succeeded" in worker_log, worker_log[-2000:]
    finally:
        stop = subprocess.run(["bash", "-euo", "pipefail", "-c", blocks[-1]], cwd=project, env=env,
                              capture_output=True, text=True, timeout=180)
        leftovers = processes_of(deploy)
        for pid in leftovers:  # only what this walkthrough started (its folder is in their command or environment)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(base, ignore_errors=True)
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert leftovers == [], "processes left running by the walkthrough"
    assert time.time() - started < 1300
