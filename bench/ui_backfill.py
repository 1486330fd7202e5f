"""Rebuild every dataset partition as one backfill through `dagster dev`, then screenshot the backfill page.

python -m bench.ui_backfill [--out-dir docs/images] [--port 3124]
Needs a built data root (`medbench build`: the partitions exist) and Debian's chromium. The backfill is
launched with the UI's own GraphQL mutation (`launchPartitionBackfill`, what the "Launch backfill" button of
the materialize dialog sends): every per-dataset asset for all partitions plus the cross-dataset assets, one
backfill; the daemon that `dagster dev` starts runs it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from bench.ui_screenshot import dagster_dev, find_chromium, screenshot
from pipelines.config import PROJECT_ROOT

LAUNCH = """mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }"""
STATUS = """query($id: String!) { partitionBackfillOrError(backfillId: $id) { __typename
  ... on PartitionBackfill { status numPartitions isAssetBackfill runs { runId status tags { key value } } } } }"""
DONE = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}


def _client(base: str):
    from dagster_graphql import DagsterGraphQLClient
    host, port = base.removeprefix("http://").split(":")
    return DagsterGraphQLClient(host, port_number=int(port))


def asset_paths() -> list[list[str]]:
    """Every per-dataset and cross-dataset asset of a build (what "Materialize all" on the graph selects)."""
    from assets.definitions import GLOBAL_KEYS, PER_DATASET_KEYS
    return [list(k.path) for k in [*PER_DATASET_KEYS, *GLOBAL_KEYS]]


def launch_rebuild(base: str, title: str = "rebuild all datasets") -> str:
    """One asset backfill over all partitions of the `datasets` partitions; returns its id."""
    params = {"assetSelection": [{"path": p} for p in asset_paths()], "allPartitions": True, "title": title}
    res = _client(base)._execute(LAUNCH, {"params": params})["launchPartitionBackfill"]
    if res["__typename"] != "LaunchBackfillSuccess":
        raise RuntimeError(f"backfill not launched: {res}")
    return res["backfillId"]


def wait_backfill(base: str, backfill_id: str, timeout: float = 1200) -> dict:
    """Poll until the backfill has finished; returns its GraphQL record (status, partitions, runs)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        record = _client(base)._execute(STATUS, {"id": backfill_id})["partitionBackfillOrError"]
        if record.get("status") in DONE and not [r for r in record["runs"] if r["status"] in ("QUEUED", "STARTED",
                                                                                              "STARTING")]:
            return record
        time.sleep(3)
    raise TimeoutError(f"backfill {backfill_id} did not finish within {timeout:.0f} s")


def backfill_page(base: str, backfill_id: str, tab: str = "overview") -> str:
    """The backfill's page: `overview` (each asset's partitions targeted, in progress, succeeded, failed) or
    `runs` (the runs it launched)."""
    return f"{base}/runs/b/{backfill_id}" + ("" if tab == "overview" else f"?tab={tab}")


def main(argv: list[str] | None = None) -> list[Path]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out-dir", type=Path, default=PROJECT_ROOT / "docs" / "images")
    ap.add_argument("--port", type=int, default=3124)
    args = ap.parse_args(argv)
    chromium = find_chromium()
    if not chromium:
        sys.exit("chromium not found: apt-get install chromium")
    with dagster_dev(args.port) as base:
        backfill_id = launch_rebuild(base)
        record = wait_backfill(base, backfill_id)
        shots = [screenshot(backfill_page(base, backfill_id, tab), args.out_dir / name, chromium)
                 for tab, name in (("overview", "backfill.png"), ("runs", "backfill_runs.png"))]
    print(record["status"], f"{record['numPartitions']} partitions, {len(record['runs'])} runs", *shots)
    return shots


if __name__ == "__main__":
    main()
