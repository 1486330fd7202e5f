"""Start `dagster dev` on the project, screenshot the asset graph with headless Chromium, stop.

python -m bench.ui_screenshot [--out bench/out/asset_graph.png] [--port 3123]
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
from pathlib import Path

from pipelines.config import PROJECT_ROOT


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


def screenshot(url: str, out: Path, chromium: str) -> None:
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        f"--user-data-dir={profile}", "--window-size=1600,1000", "--virtual-time-budget=20000",
                        f"--screenshot={out}", url], check=True, capture_output=True, timeout=120)


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=PROJECT_ROOT / "bench" / "out" / "asset_graph.png")
    ap.add_argument("--port", type=int, default=3123)
    ap.add_argument("--path", default="/asset-groups/per_dataset")
    args = ap.parse_args(argv)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        sys.exit("chromium not found: apt-get install chromium")
    from assets.build import ensure_dagster_home
    ensure_dagster_home()
    dagster = Path(sys.executable).with_name("dagster")
    proc = subprocess.Popen([str(dagster), "dev", "-h", "127.0.0.1", "-p", str(args.port)], cwd=PROJECT_ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env=os.environ.copy())
    try:
        wait_for(f"http://127.0.0.1:{args.port}/server_info", 180)
        time.sleep(5)  # the code location loads after the server answers
        args.out.parent.mkdir(parents=True, exist_ok=True)
        screenshot(f"http://127.0.0.1:{args.port}{args.path}", args.out, chromium)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    print(args.out)
    return args.out


if __name__ == "__main__":
    main()
