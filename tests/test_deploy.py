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
        monkeypatch.setenv("DAGSTER_HOME", str(deploy / "dagster_home"))
        with dg.DagsterInstance.get() as instance:
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


# --- Kubernetes: deploy/k8s/values.yaml ------------------------------------------------------------------------

K8S_VALUES = PROJECT_ROOT / "deploy" / "k8s" / "values.yaml"
RUN_K8S_KEYS = {"containerConfig": "container_config", "podTemplateSpecMetadata": "pod_template_spec_metadata",
                "podSpecConfig": "pod_spec_config", "jobConfig": "job_config", "jobMetadata": "job_metadata",
                "jobSpecConfig": "job_spec_config"}


def launcher_config(values: dict, kubeconfig: Path) -> dict:
    """The run_launcher section the chart's instance ConfigMap builds from `runLauncher.config.k8sRunLauncher`
    (names from env vars the chart sets on every pod; ConfigMap/Secret references reduced to their names). The one
    change: the stand-in cluster's kubeconfig instead of the in-cluster service account."""
    k = values["runLauncher"]["config"]["k8sRunLauncher"]
    config = {"load_incluster_config": False, "kubeconfig_file": str(kubeconfig), "job_namespace": "medbench",
              "image_pull_policy": k["imagePullPolicy"], "service_account_name": "medbench-dagster",
              "dagster_home": {"env": "DAGSTER_HOME"}, "instance_config_map": {"env": "DAGSTER_K8S_INSTANCE_CONFIG_MAP"},
              "postgres_password_secret": {"env": "DAGSTER_K8S_PG_PASSWORD_SECRET"},
              "env_config_maps": [{"env": "DAGSTER_K8S_PIPELINE_RUN_ENV_CONFIGMAP"}, *(c["name"] for c in k["envConfigMaps"])],
              "env_secrets": [s["name"] for s in k["envSecrets"]], "env_vars": k["envVars"],
              "volume_mounts": k["volumeMounts"], "volumes": k["volumes"], "labels": k["labels"],
              "run_k8s_config": {RUN_K8S_KEYS[key]: v for key, v in k["runK8sConfig"].items()}}
    return {"module": "dagster_k8s", "class": "K8sRunLauncher", "config": config}


class KubeApi:
    """A stand-in for the Kubernetes API server on 127.0.0.1: records the Jobs created and answers as the API does."""

    def __init__(self):
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        self.jobs: list[tuple[str, dict]] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                match = re.match(r"^/apis/batch/v1/namespaces/([^/]+)/jobs$", self.path.split("?")[0])
                status, reply = (404, {"kind": "Status", "code": 404})
                if match:
                    api.jobs.append((match.group(1), body))
                    status, reply = 201, {**body, "status": {}}
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def medbench_dataset_job():
    """Reconstructable entry point: the per-dataset job of the medbench code location."""
    from assets.definitions import defs
    return defs.resolve_job_def("dataset_job")


def test_k8s_values_give_run_jobs_with_the_project_image_env_and_data_volume(tmp_path, monkeypatch):
    """The Helm values' K8sRunLauncher section loads as a Dagster instance's run launcher (Dagster checks the config)
    and a launched run becomes a Kubernetes Job from the user deployment's image, with the ConfigMap and Secret as
    its environment and the shared data volume mounted."""
    import yaml
    from dagster._core.launcher import LaunchRunContext
    values = yaml.safe_load(K8S_VALUES.read_text())
    deployment = values["dagster-user-deployments"]["deployments"][0]
    image = f"{deployment['image']['repository']}:{deployment['image']['tag']}"
    api = KubeApi()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "stand-in",
        "clusters": [{"name": "stand-in", "cluster": {"server": api.url}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "stand-in", "context": {"cluster": "stand-in", "user": "u"}}]}))
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump({"run_launcher": launcher_config(values, kubeconfig)}))
    for var, value in (("DAGSTER_HOME", home), ("DAGSTER_K8S_INSTANCE_CONFIG_MAP", "medbench-dagster-instance"),
                       ("DAGSTER_K8S_PG_PASSWORD_SECRET", "dagster-postgresql-secret"),
                       ("DAGSTER_K8S_PIPELINE_RUN_ENV_CONFIGMAP", "medbench-dagster-pipeline-env")):
        monkeypatch.setenv(var, str(value))  # the chart sets these on the webserver and daemon pods
    try:
        with dg.DagsterInstance.get() as instance:
            launcher = instance.run_launcher
            assert type(launcher).__name__ == "K8sRunLauncher"
            recon = dg.reconstructable(medbench_dataset_job)  # as the code server names it: with its image
            recon = recon._replace(repository=recon.repository._replace(container_image=image))
            run = instance.create_run_for_job(job_def=recon.get_definition(), job_code_origin=recon.get_python_origin(),
                                              tags={"dagster/partition": "demo_polyp"})
            launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))
    finally:
        api.close()
    assert len(api.jobs) == 1
    namespace, job = api.jobs[0]
    assert namespace == "medbench" and job["kind"] == "Job"
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == image and container["imagePullPolicy"] == "IfNotPresent"
    assert container["args"][:3] == ["dagster", "api", "execute_run"]
    sources = {(k, v["name"]) for e in container["envFrom"] for k, v in e.items()}
    assert {("configMapRef", "medbench-env"), ("secretRef", "medbench-secrets"),
            ("configMapRef", "medbench-dagster-pipeline-env")} <= sources
    assert {"name": "medbench-data", "mountPath": "/mnt/medbench"} in container["volumeMounts"]
    claims = {v["name"]: v.get("persistentVolumeClaim", {}).get("claimName") for v in pod["volumes"]}
    assert claims["medbench-data"] == "medbench-data"
    assert container["resources"]["limits"]["memory"] == "16Gi"
    assert job["metadata"]["labels"]["app.kubernetes.io/part-of"] == "medbench"
    assert pod["serviceAccountName"] == "medbench-dagster"


@pytest.mark.timeout(300)
def test_k8s_user_deployment_args_serve_the_code_location():
    """The user deployment's `dagster api grpc` arguments (also the Docker image's command) serve the medbench code
    location: a real gRPC server, asked by Dagster's health check and for its repositories."""
    import sys

    import yaml
    values = yaml.safe_load(K8S_VALUES.read_text())
    args = values["dagster-user-deployments"]["deployments"][0]["dagsterApiGrpcArgs"]
    assert args == ["-m", "assets.definitions", "--location-name", "medbench"]
    dagster = str(Path(sys.executable).parent / "dagster")
    port = _free_port()
    server = subprocess.Popen([dagster, "api", "grpc", *args, "-h", "127.0.0.1", "-p", str(port)], cwd=PROJECT_ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        from dagster._grpc.client import DagsterGrpcClient
        client = DagsterGrpcClient(port=port, host="127.0.0.1")
        deadline = time.time() + 240
        while time.time() < deadline and server.poll() is None:
            with contextlib.suppress(Exception):
                if client.health_check_query() == "SERVING":
                    break
            time.sleep(1)
        assert client.health_check_query() == "SERVING"
        listing = client.list_repositories()  # serialized ListRepositoriesResponse (or the load error)
        assert "ListRepositoriesResponse" in listing and "assets.definitions" in listing, listing[:2000]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.communicate()
