"""Start `dagster dev` on the project, screenshot UI pages with headless Chromium, stop.

python -m bench.ui_screenshot [--out-dir bench/out] [--port 3123] [--page NAME=PATH ...]
Needs Debian's chromium (apt-get install chromium). Proves the UI serves the definitions.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipelines.config import PROJECT_ROOT

PAGES = {"asset_graph": "/asset-groups", "benchmark": "/assets/benchmark"}


def find_chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def wait_for(url: str, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


def _chromium(chromium: str, args: list[str], timeout: int = 120) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                               "--no-first-run", "--disable-background-networking", "--disable-component-update",
                               "--disable-sync", f"--user-data-dir={profile}", "--window-size=1600,1000",
                               "--virtual-time-budget=20000", *args], check=True, capture_output=True,
                              timeout=timeout)


def screenshot(url: str, out: Path, chromium: str) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    _chromium(chromium, [f"--screenshot={out}", url])
    return out


def rendered_text(url: str, chromium: str) -> str:
    """The page's DOM after the app rendered (to check what the user would read)."""
    return _chromium(chromium, ["--dump-dom", url]).stdout.decode(errors="replace")


@contextmanager
def dagster_dev(port: int, env: dict[str, str] | None = None, timeout: float = 180) -> Iterator[str]:
    """`dagster dev` on 127.0.0.1:port with the project's definitions; yields the base URL."""
    from cli.build import ensure_dagster_home
    ensure_dagster_home()
    dagster = Path(sys.executable).with_name("dagster")
    proc = subprocess.Popen([str(dagster), "dev", "-h", "127.0.0.1", "-p", str(port)], cwd=PROJECT_ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, **(env or {})})
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{base}/server_info", timeout)
        wait_for_location(base, timeout)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def wait_for_location(base: str, timeout: float) -> None:
    """The webserver answers before the code location has loaded: poll until it has."""
    from dagster_graphql import DagsterGraphQLClient
    host, port = base.removeprefix("http://").split(":")
    client = DagsterGraphQLClient(host, port_number=int(port))
    query = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"
    deadline = time.time() + timeout
    while time.time() < deadline:
        entries = client._execute(query)["workspaceOrError"].get("locationEntries", [])
        if entries and all(e["loadStatus"] == "LOADED" for e in entries):
            return
        time.sleep(1)
    raise TimeoutError(f"the code location did not load within {timeout:.0f} s")


def main(argv: list[str] | None = None) -> list[Path]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out-dir", type=Path, default=PROJECT_ROOT / "bench" / "out")
    ap.add_argument("--port", type=int, default=3123)
    ap.add_argument("--page", action="append", default=[], help="NAME=PATH (default: asset graph, benchmark)")
    args = ap.parse_args(argv)
    chromium = find_chromium()
    if not chromium:
        sys.exit("chromium not found: apt-get install chromium")
    pages = dict(p.split("=", 1) for p in args.page) or PAGES
    with dagster_dev(args.port) as base:
        shots = [screenshot(base + path, args.out_dir / f"{name}.png", chromium) for name, path in pages.items()]
    for s in shots:
        print(s)
    return shots


if __name__ == "__main__":
    main()
