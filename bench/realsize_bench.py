"""Real-size bench: one `medbench build` of four abdominal CTs against the floor measured in the same run.

Run: ``python -m bench.realsize_bench [--workers 2] [--repeats 1] [--profile] [--work DIR]``

The set (never committed; made once under ``--work`` and reused): four CT volumes of 488 x 404 x 224 voxels at
0.75 x 0.75 x 1.5 mm with their labels, resampled from the real TotalSegmentator CT of ../shared (``ct_full``,
3 mm) through a seeded small rotation, scale and translation each (linear for HU, nearest for labels), so each
acts as a distinct patient. One dataset (``volume_pairs``, the label map of tests/shared_registry).

Each build is the command line a user runs (``medbench build`` in a fresh process, its own data root and Dagster
home), optionally under py-spy (``--profile``: sampled stacks of the build and its worker processes). While it
runs, every process of the build is sampled for its resident memory, so each Dagster step gets the peak RSS of
any process during it. Reported:

* ``wall_s`` and per-step seconds from Dagster's event log (step start/end), plus time outside the steps;
* ``floor_s`` = decoding the 4 image + label volumes (SimpleITK) + PNG-encoding each exported image once at
  OpenCV's default level, measured after the build in the same run; ``wall_over_floor`` (target <= 3);
* ``peak_rss_mb`` per step and overall, against one volume's float32 size (target: <= 2 x float32 + 300 MB in
  ingest and in export: ``peak_rss_ingest_mb`` over raw_samples and standardized, ``peak_rss_export_mb`` over
  benchmark_exports and its checks, each the largest process of the build while those steps ran);
* ``busy_cpu_s``: every core's busy seconds during the build (quiet machine only); over the cores, the shortest
  wall that much work allows;
* export bytes per item: Parquet bytes per item over the mean PNG size, TSV bytes per item over the mean
  base64 payload (target <= 1.2 each), and the mean PNG size itself;
* ``png_levels``: PNG size and encode time of the exported images at OpenCV's default, levels 1, 2, 3, 6 with
  libpng's adaptive row filter and levels 1, 2, 3 with the Up filter, and with the project's encoder
  (libdeflate, Up filter) at levels 1, 2, 3, 6 (the level and filter choice).
"""

from __future__ import annotations

import argparse
import base64
import collections
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import yaml

from bench.scale_bench import report, small_similarity
from pipelines.config import PROJECT_ROOT
from pipelines.imageio import encode_png

SHARED = PROJECT_ROOT.parent / "shared" / "datasets" / "totalseg_ct_nifti"
LABEL_MAP = PROJECT_ROOT / "tests" / "shared_registry" / "label_maps" / "totalseg.yaml"
OUT = PROJECT_ROOT / "bench" / "out"
SIZE = (488, 404, 224)  # x, y, z voxels
SPACING = (0.75, 0.75, 1.5)  # mm
VOLUMES = 4


def make_set(root: Path, n: int = VOLUMES, seed: int = 0) -> Path:
    """The real-size set under ``root`` (kept: re-made only when a file is missing)."""
    names = [f"patient_{c:03d}.nii.gz" for c in range(n)]
    if all((root / d / f).is_file() for d in ("images", "labels") for f in names):
        return root
    img = sitk.ReadImage(str(SHARED / "images" / "ct_full.nii.gz"), sitk.sitkInt16)
    lab = sitk.ReadImage(str(SHARED / "labels" / "ct_full.nii.gz"))
    centre = img.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in img.GetSize()])
    direction = np.array(img.GetDirection()).reshape(3, 3)
    corner = np.array(img.GetOrigin()) - direction @ (np.array(img.GetSpacing()) / 2)  # outer edge of voxel 0
    origin = corner + direction @ (np.array(SPACING) / 2)
    ref = sitk.Image(list(SIZE), sitk.sitkInt16)
    ref.SetSpacing(SPACING)
    ref.SetDirection(img.GetDirection())
    ref.SetOrigin(origin.tolist())
    rng = np.random.default_rng(seed)
    for d in ("images", "labels"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for name in names:
        t = small_similarity(rng, centre)
        sitk.WriteImage(sitk.Resample(img, ref, t, sitk.sitkLinear, -1024, sitk.sitkInt16), str(root / "images" / name))
        sitk.WriteImage(sitk.Resample(lab, ref, t, sitk.sitkNearestNeighbor, 0, lab.GetPixelID()),
                        str(root / "labels" / name))
    return root


class TreeSampler(threading.Thread):
    """Resident memory of every process under ``pid`` (py-spy itself excluded), sampled every ``period`` s."""

    def __init__(self, pid: int, period: float = 0.1):
        super().__init__(daemon=True)
        self.pid, self.period = pid, period
        self.samples: list[tuple[float, int, int]] = []  # (time, pid, rss bytes)
        self.names: dict[int, str] = {}
        self.hwm: dict[int, int] = {}  # kernel's own peak (VmHWM) per process, last read
        self.stop = threading.Event()

    def _tree(self) -> list[int]:
        children = collections.defaultdict(list)
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    ppid = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                children[ppid].append(int(d))
        out, todo = [], [self.pid]
        while todo:
            p = todo.pop()
            out.append(p)
            todo += children.get(p, [])
        return out

    def run(self) -> None:
        while not self.stop.is_set():
            now = time.time()
            for p in self._tree():
                try:
                    status = Path(f"/proc/{p}/status").read_text()
                except OSError:
                    continue
                fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
                name = fields.get("Name", "").strip()
                if name == "py-spy" or "VmRSS" not in fields:
                    continue
                self.names.setdefault(p, name)
                rss = int(fields["VmRSS"].split()[0]) * 1024
                self.hwm[p] = max(self.hwm.get(p, 0), int(fields.get("VmHWM", "0 kB").split()[0]) * 1024)
                self.samples.append((now, p, rss))
            self.stop.wait(self.period)

    def peak(self, start: float = 0.0, end: float = float("inf")) -> int:
        return max((r for t, _, r in self.samples if start <= t <= end), default=0)

    def build_rss_at(self, when: float) -> int:
        """The build process's resident memory at the first sample from ``when`` on (what a step starts from)."""
        pid = self.build_pid()
        return next((r for t, p, r in self.samples if p == pid and t >= when), 0)

    def peak_process(self, start: float, end: float) -> str:
        """Which process held the peak in a window: 'build' (the one `medbench build` process) or 'worker'."""
        best = max(((r, p) for t, p, r in self.samples if start <= t <= end), default=(0, None))[1]
        return "-" if best is None else ("build" if best == self.build_pid() else f"worker {best}")

    def build_pid(self) -> int | None:
        """The build process: the sampled root, or py-spy's one child when profiling."""
        return self.pid if self.names.get(self.pid) != "py-spy" and self.pid in self.names else \
            min((p for p in self.names if p != self.pid), default=None)


def step_times(home: Path) -> dict[str, list[tuple[float, float]]]:
    """Dagster step key -> [(start, end)] over every run recorded in ``home`` (epoch seconds)."""
    os.environ["DAGSTER_HOME"] = str(home)
    import dagster as dg
    instance = dg.DagsterInstance.get()
    steps: dict[str, list[tuple[float, float]]] = collections.defaultdict(list)
    for rec in instance.get_run_records():
        for st in instance.get_run_step_stats(rec.dagster_run.run_id):
            if st.end_time and st.start_time:
                steps[st.step_key].append((st.start_time, st.end_time))
    return steps


def floor(src: Path, pngs: list[Path]) -> dict:
    """Decode every image + label volume, then PNG-encode every exported image once at OpenCV's default level."""
    import cv2
    t = time.perf_counter()
    for p in sorted((src / "images").iterdir()):
        sitk.GetArrayViewFromImage(sitk.ReadImage(str(p)))
        sitk.GetArrayViewFromImage(sitk.ReadImage(str(src / "labels" / p.name)))
    decode = time.perf_counter() - t
    arrays = [cv2.imread(str(p)) for p in pngs]
    t = time.perf_counter()
    sizes = [len(cv2.imencode(".png", a)[1]) for a in arrays]
    encode = time.perf_counter() - t
    levels = {}
    sample = arrays[::max(1, len(arrays) // 300)]  # the level choice: size against encode time, on up to ~300 images
    up = [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP]
    choices = {"default": [], **{str(n): [cv2.IMWRITE_PNG_COMPRESSION, n] for n in (1, 2, 3, 6)},
               **{f"{n} up": [cv2.IMWRITE_PNG_COMPRESSION, n, *up] for n in (1, 2, 3)}}
    for level, params in choices.items():
        t = time.perf_counter()
        n = sum(len(cv2.imencode(".png", a, params)[1]) for a in sample)
        levels[str(level)] = {"ms_per_image": round(1000 * (time.perf_counter() - t) / len(sample), 2),
                              "mean_bytes": round(n / len(sample))}
    rgb = [cv2.cvtColor(a, cv2.COLOR_BGR2RGB) for a in sample]
    for n in (1, 2, 3, 6):  # the project's encoder (libdeflate, Up filter): what render writes
        t = time.perf_counter()
        size = sum(len(encode_png(a, n, "up")) for a in rgb)
        levels[f"libdeflate {n} up"] = {"ms_per_image": round(1000 * (time.perf_counter() - t) / len(sample), 2),
                                        "mean_bytes": round(size / len(sample))}
    return {"floor_s": round(decode + encode, 3), "floor_decode_s": round(decode, 3),
            "floor_encode_s": round(encode, 3), "default_level_mean_bytes": round(sum(sizes) / max(len(sizes), 1)),
            "png_levels": levels}


def one_build(src: Path, work: Path, workers: int, profile: bool, tree: Path = PROJECT_ROOT,
              floor_pngs: list[Path] | None = None, component_cap: int | None = None) -> dict:
    """One build of the set with ``tree``'s code; the floor is measured after it (and before it as well when
    ``floor_pngs``, the exported images of an earlier build of the same set, are given)."""
    floor_before = floor(src, floor_pngs)["floor_s"] if floor_pngs else None
    data, home = work / "data", work / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text((PROJECT_ROOT / "dagster.yaml").read_text())
    registry = work / "sources.yaml"
    registry.write_text(yaml.safe_dump({"version": 1, "datasets": [{
        "id": "ct_realsize", "root": str(src), "format": "volume_pairs", "modality": "CT", "dimension": 3,
        "task_type": "seg", "label_map": str(LABEL_MAP), "license": "Apache-2.0"}]}))
    settings = {"standardize": {"workers": workers}, "benchmark": {"render_workers": workers},
                "generators": {"workers": workers},
                "ingest": {"workers": workers, "data_dirs": [str(src.parent)]}}  # the set lives outside the build folder
    if component_cap is not None:
        settings["benchmark"]["per_component_task_cap"] = component_cap
    (work / "config.yaml").write_text(yaml.safe_dump(settings))
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    env["DAGSTER_HOME"] = str(home)
    env["PYTHONPATH"] = str(tree)  # the source tree whose code builds (another checkout, for before/after runs)
    cmd = [sys.executable, "-c", "from cli.main import app; app()", "build", "--registry", str(registry),
           "--config", str(work / "config.yaml"), "--data-root", str(data)]
    if profile:
        pyspy = Path(sys.executable).parent / "py-spy"
        cmd = [str(pyspy), "record", "--subprocesses", "--format", "raw", "--rate", "50", "--nonblocking",
               "-o", str(work / "profile.txt"), "--", *cmd]
    cpu0 = busy_cpu_s()
    t0 = time.time()
    proc = subprocess.Popen(cmd, cwd=tree, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sampler = TreeSampler(proc.pid)
    sampler.start()
    log, _ = proc.communicate()
    wall = time.time() - t0
    cpu1 = busy_cpu_s()
    sampler.stop.set()
    sampler.join()
    (work / "build.log").write_text(log)
    if proc.returncode:
        raise SystemExit(f"build failed ({proc.returncode}):\n{log[-4000:]}")
    steps = step_times(home)
    import pandas as pd
    rendered = pd.read_parquet(data / "tables" / "rendered_items.parquet", columns=["image_path"])
    manifest = json.loads((data / "benchmark" / "manifest.json").read_text())
    exported = manifest["items"] + sum(manifest.get("configs", {}).values())  # main, then the other configs
    pngs = [data / p for p in rendered["image_path"]]
    png_bytes = [p.stat().st_size for p in pngs]
    mean_png = sum(png_bytes) / max(len(png_bytes), 1)
    files = manifest["files"]
    parquet = sum(v["bytes"] for k, v in files.items() if k.endswith(".parquet") and not k.startswith("private/"))
    tsv = sum(v["bytes"] for k, v in files.items() if k.endswith(".tsv"))
    b64 = sum(4 * ((n + 2) // 3) for n in png_bytes)
    vol_f32 = int(np.prod(SIZE)) * 4
    per_step = {k: {"s": round(sum(e - s for s, e in v), 2),
                    "peak_rss_mb": round(max(sampler.peak(s, e) for s, e in v) / 2**20),
                    "peak_in": sampler.peak_process(min(s for s, _ in v), max(e for _, e in v)),
                    "build_rss_at_start_mb": round(sampler.build_rss_at(min(s for s, _ in v)) / 2**20)}
                for k, v in sorted(steps.items())}
    in_steps = sum(v["s"] for v in per_step.values())
    stage_peak = {stage: max((v["peak_rss_mb"] for k, v in per_step.items() if k.startswith(prefixes)), default=0)
                  for stage, prefixes in (("ingest", ("raw_samples", "standardized")), ("export", ("benchmark_exports",)))}
    result = {"workers": workers, "profiled": profile, "wall_s": round(wall, 2), "steps": per_step,
              "outside_steps_s": round(wall - in_steps, 2), "exported_items": exported, "rendered_pngs": len(pngs),
              "mean_png_bytes": round(mean_png), "parquet_bytes_per_item_over_png": round(parquet / max(exported, 1) / mean_png, 3),
              "tsv_bytes_per_item_over_base64": round(tsv / max(exported, 1) / (b64 / max(len(png_bytes), 1)), 3),
              "export_bytes_per_item": round((parquet + tsv) / max(exported, 1)),
              "peak_rss_mb": round(max(sampler.hwm.values(), default=0) / 2**20),
              "peak_rss_by_process_mb": {f"{p} {sampler.names[p]}": round(v / 2**20) for p, v in
                                         sorted(sampler.hwm.items(), key=lambda kv: -kv[1])[:8]},
              "peak_rss_ingest_mb": stage_peak["ingest"], "peak_rss_export_mb": stage_peak["export"],
              "volume_float32_mb": round(vol_f32 / 2**20), "rss_limit_mb": round((2 * vol_f32 + 300 * 2**20) / 2**20),
              "loadavg_before_after": None,
              # every core's busy time during the build (the whole machine: quiet runs only); over the cores, the
              # shortest wall this much work allows
              "busy_cpu_s": round(cpu1 - cpu0, 1) if cpu0 is not None and cpu1 is not None else None,
              "cores": os.cpu_count()}
    result.update(floor(src, pngs))
    if floor_before is not None:  # the floor taken just before the build too: load only ever adds time
        result["floor_before_build_s"] = floor_before
        result["floor_s_min"] = min(floor_before, result["floor_s"])
    result["wall_over_floor"] = round(wall / result["floor_s"], 2)
    result["wall_over_min_floor"] = round(wall / result.get("floor_s_min", result["floor_s"]), 2)
    if profile:
        result["profile_top"] = summarize_profile(work / "profile.txt")
    return result


def busy_cpu_s() -> float | None:
    """Seconds the machine's cores have been busy since boot (Linux's /proc/stat: user, nice, system, irq,
    softirq), or None elsewhere. Counts every process, so the build's own share needs a quiet machine."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in fields[:7])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def summarize_profile(path: Path, top: int = 25) -> dict:
    """Self and inclusive samples per function from py-spy's raw (collapsed) stacks, all processes together."""
    own: collections.Counter = collections.Counter()
    incl: collections.Counter = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        frames = [f for f in stack.split(";") if not f.startswith("process ")]
        total += int(n)
        if frames:
            own[frames[-1]] += int(n)
        for f in set(frames):
            incl[f] += int(n)
    pct = (lambda c: {k: round(100 * v / total, 1) for k, v in c.most_common(top)})
    return {"samples": total, "self_pct": pct(own), "inclusive_pct": pct(incl)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, nargs="+", default=[2], help="one build per value, interleaved")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--profile", action="store_true", help="run the build under py-spy (all processes)")
    ap.add_argument("--work", type=Path, default=OUT / "realsize", help="where the set and the builds go")
    ap.add_argument("--name", default="realsize_bench")
    ap.add_argument("--component-cap", type=int, default=None,
                    help="benchmark.per_component_task_cap for the builds (0: off). The set is 4 patients, so the "
                         "default cap (30 units per patient and task) keeps about 540 items; 0 gives the issue's "
                         "3,800-item export")
    ap.add_argument("--tree", action="append", default=[], metavar="NAME=PATH",
                    help="also build with the code of another checkout (e.g. before=../main), interleaved")
    args = ap.parse_args(argv)
    if not SHARED.is_dir():
        raise SystemExit(f"needs the real CT in {SHARED} (clone with ../shared beside the repo)")
    src = make_set(args.work / "ct")
    trees = {"this": PROJECT_ROOT, **{t.split("=", 1)[0]: Path(t.split("=", 1)[1]).resolve() for t in args.tree}}
    runs, pngs_seen = [], None
    for rep in range(args.repeats):
        for w in args.workers:
            for name, tree in trees.items():
                work = args.work / f"build_{name}_w{w}_r{rep}"
                subprocess.run(["rm", "-rf", str(work)], check=True)
                load = os.getloadavg()[0]
                r = one_build(src, work, w, args.profile, tree, pngs_seen, args.component_cap)
                pngs_seen = sorted((work / "data" / "rendered").rglob("*.png"))
                r["loadavg_before_after"] = [round(load, 2), round(os.getloadavg()[0], 2)]
                r["repeat"], r["tree"] = rep, name
                runs.append(r)
                (work / "result.json").write_text(json.dumps(r, indent=1))  # kept even if a later build fails
                print(json.dumps({k: r[k] for k in ("tree", "workers", "repeat", "wall_s", "floor_s", "wall_over_floor",
                                                    "peak_rss_mb", "loadavg_before_after")}), file=sys.stderr)
    out = {"runs": runs, "nproc": os.cpu_count()}
    by_w = {w: [r["wall_s"] for r in runs if r["workers"] == w and r["tree"] == "this"] for w in args.workers}
    if len(args.workers) > 1:
        lo, hi = min(args.workers), max(args.workers)
        out["speedup_min_walls"] = round(min(by_w[lo]) / min(by_w[hi]), 3)
    return report(args.name, out)


if __name__ == "__main__":
    main()
