"""One dataset partition from the UI vs the same work from the CLI (target: UI ≤ 1.5× CLI).

python -m bench.ui_vs_cli [--dataset demo_ct_abdomen] [--port 3124] [--repeat 2]
CLI: wall time of `medbench build --dataset D --force --select <per-dataset assets>` (a fresh
process: import, instance, run). UI: `dagster dev` (webserver + daemon, queued runs) is started,
then the same partition of `dataset_job` is launched through the GraphQL API the UI's
"Materialize" button uses; wall time from launch to SUCCESS. Writes bench/out/ui_vs_cli.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.ui_screenshot import dagster_dev
from pipelines.config import PROJECT_ROOT


def _cli_seconds(dataset: str, keys: list[str], env: dict[str, str]) -> float:
    medbench = Path(sys.executable).with_name("medbench")
    cmd = [str(medbench), "build", "--dataset", dataset, "--force"] + [a for k in keys for a in ("--select", k)]
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=600)
    return time.perf_counter() - t0


def _ui_seconds(base: str, dataset: str) -> float:
    from dagster_graphql import DagsterGraphQLClient
    host, port = base.removeprefix("http://").split(":")
    client = DagsterGraphQLClient(host, port_number=int(port))
    t0 = time.perf_counter()
    run_id = client.submit_job_execution("dataset_job", tags={"dagster/partition": dataset})
    while True:
        status = client.get_run_status(run_id).value
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(0.25)
    if status != "SUCCESS":
        raise RuntimeError(f"UI run {run_id} ended {status}")
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="demo_ct_abdomen")
    ap.add_argument("--port", type=int, default=3124)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--out", type=Path, default=PROJECT_ROOT / "bench" / "out" / "ui_vs_cli.json")
    args = ap.parse_args(argv)
    from assets.definitions import PER_DATASET_KEYS
    from pipelines.demo import prepare_demo_sources
    keys = [k.to_user_string() for k in PER_DATASET_KEYS]
    with tempfile.TemporaryDirectory(prefix="medbench-uibench-") as tmp:
        tmp = Path(tmp)
        sources = prepare_demo_sources(tmp / "demo_sources")
        doc = yaml.safe_load((PROJECT_ROOT / "sources.yaml").read_text())
        doc["datasets"] = [d for d in doc["datasets"] if d["id"] == args.dataset]
        for d in doc["datasets"]:
            d["root"], d["label_map"] = str(sources / Path(d["root"]).name), str(PROJECT_ROOT / d["label_map"])
        (tmp / "sources.yaml").write_text(yaml.safe_dump(doc))
        (tmp / "home").mkdir()
        shutil.copy(PROJECT_ROOT / "dagster.yaml", tmp / "home" / "dagster.yaml")
        env = {**os.environ, "DAGSTER_HOME": str(tmp / "home"), "MEDBENCH_REGISTRY": str(tmp / "sources.yaml"),
               "MEDBENCH_DATA_ROOT": str(tmp / "data")}
        os.environ.update(env)
        cli = [_cli_seconds(args.dataset, keys, env) for _ in range(args.repeat)]  # the first also adds the partition
        with dagster_dev(args.port, env) as base:
            ui = [_ui_seconds(base, args.dataset) for _ in range(args.repeat)]
    result = {"dataset": args.dataset, "cli_s": [round(x, 2) for x in cli], "ui_s": [round(x, 2) for x in ui],
              "ratio_ui_over_cli": round(min(ui) / min(cli), 2)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
