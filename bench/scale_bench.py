"""Scale benchmark: the build's cost must follow the benchmark, not the input.

Run: ``python -m bench.scale_bench [--sizes 8 32] [--workers 2]``

For each size N it makes N warped copies of the real TotalSegmentator CT in ../shared (``ct_full``;
a seeded small rotation, scale and translation per copy, so each acts as a distinct patient), registers
them as one ``volume_pairs`` dataset with the label map of tests/shared_registry, and runs the full
build (every asset, through Dagster) in a fresh process with its own data root and Dagster home.
Reported per size: wall time per asset (Dagster step timings), PNG files and bytes written, exported
items, and the floor measured in the same run: decoding the N image+label volumes plus PNG-encoding
the exported images. Targets: wall(32) / wall(8) <= 1.5; PNG files <= 1.2 x exported items + review
sheets. Each size is built ``--repeats`` times (default 2), sizes interleaved; the ratio compares the
fastest build of each size, since a busy or throttled machine only ever adds time (the per-repeat ratios
are reported too).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import yaml

from pipelines.config import PROJECT_ROOT

SHARED = PROJECT_ROOT.parent / "shared" / "datasets" / "totalseg_ct_nifti"
LABEL_MAP = PROJECT_ROOT / "tests" / "shared_registry" / "label_maps" / "totalseg.yaml"
OUT = PROJECT_ROOT / "bench" / "out"


def small_similarity(rng: np.random.Generator, centre) -> sitk.Similarity3DTransform:
    """A seeded small rotation (up to 6 degrees about a random axis), scale (+-6 %) and shift (+-6 mm) about
    ``centre``: one scan made into a distinct-looking patient."""
    t = sitk.Similarity3DTransform()
    t.SetCenter(centre)
    axis = rng.normal(size=3)
    t.SetRotation((axis / np.linalg.norm(axis)).tolist(), float(np.deg2rad(rng.uniform(-6, 6))))
    t.SetScale(float(rng.uniform(0.94, 1.06)))
    t.SetTranslation(rng.uniform(-6, 6, 3).tolist())
    return t


def warped_copies(n: int, root: Path, seed: int = 0) -> None:
    """N copies of ct_full, each resampled through its own small random affine (linear for HU, nearest
    for labels), written as NIfTI pairs."""
    img = sitk.ReadImage(str(SHARED / "images" / "ct_full.nii.gz"), sitk.sitkInt16)
    lab = sitk.ReadImage(str(SHARED / "labels" / "ct_full.nii.gz"))
    centre = img.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in img.GetSize()])
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    for c in range(n):
        t = small_similarity(rng, centre)
        name = f"patient_{c:03d}.nii.gz"
        sitk.WriteImage(sitk.Resample(img, img, t, sitk.sitkLinear, -1024, sitk.sitkInt16), str(root / "images" / name))
        sitk.WriteImage(sitk.Resample(lab, lab, t, sitk.sitkNearestNeighbor, 0, lab.GetPixelID()),
                        str(root / "labels" / name))


def one_size(n: int, work: Path, workers: int) -> dict:
    """Child process: build everything for N copies and measure it."""
    import cv2
    import dagster as dg
    import pandas as pd

    from cli.build import build, export_config_env
    from pipelines.config import PipelineConfig
    data, home = work / "data", work / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text((PROJECT_ROOT / "dagster.yaml").read_text())
    os.environ["DAGSTER_HOME"] = str(home)
    os.environ.pop("OPENAI_API_KEY", None)
    src = work / "ct"
    warped_copies(n, src)
    registry = work / "sources.yaml"
    registry.write_text(yaml.safe_dump({"version": 1, "datasets": [{
        "id": "ct_copies", "root": str(src), "format": "volume_pairs", "modality": "CT", "dimension": 3,
        "task_type": "seg", "label_map": str(LABEL_MAP), "license": "Apache-2.0"}]}))
    settings = {"standardize": {"workers": workers}, "benchmark": {"render_workers": workers},
                "generators": {"workers": workers}, "ingest": {"workers": workers}}
    cfg = PipelineConfig.load(registry=registry, data_root=data, **settings)
    export_config_env(cfg, None)
    os.environ["MEDBENCH_CONFIG"] = str(work / "config.yaml")
    (work / "config.yaml").write_text(yaml.safe_dump(settings))
    t = time.perf_counter()
    report = build(cfg, log=lambda m: None)
    wall = time.perf_counter() - t
    instance = dg.DagsterInstance.get()
    steps: dict[str, float] = {}
    for rec in instance.get_run_records():
        for st in instance.get_run_step_stats(rec.dagster_run.run_id):
            if st.end_time and st.start_time:
                steps[st.step_key] = steps.get(st.step_key, 0.0) + st.end_time - st.start_time
    pngs = [p for p in data.rglob("*.png")]
    rendered = pd.read_parquet(data / "tables" / "rendered_items.parquet")
    t = time.perf_counter()  # the floor: decode every volume pair, PNG-encode every exported image
    for p in sorted((src / "images").iterdir()):
        sitk.GetArrayViewFromImage(sitk.ReadImage(str(p)))
        sitk.GetArrayViewFromImage(sitk.ReadImage(str(src / "labels" / p.name)))
    decode = time.perf_counter() - t
    arrays = [cv2.imread(str(data / p)) for p in rendered["image_path"]]
    t = time.perf_counter()
    for a in arrays:
        cv2.imencode(".png", a, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    encode = time.perf_counter() - t
    sheets = len(list((data / "review").glob("*.png")))
    manifest = json.loads((data / "benchmark" / "manifest.json").read_text())
    exported = manifest["items"] + manifest["robustness_items"]
    written = [p for p in pngs if "benchmark" not in p.relative_to(data).parts]
    return {"volumes": n, "failed": report.failed, "failure_reasons": {k: str(v)[:300] for k, v in report.reasons.items()},
            "wall_s": round(wall, 2), "steps_s": {k: round(v, 2) for k, v in sorted(steps.items())},
            "png_files": len(written), "png_bytes": sum(p.stat().st_size for p in written),
            "files_under_data_root": sum(1 for p in data.rglob("*") if p.is_file()),
            "bytes_under_data_root": sum(p.stat().st_size for p in data.rglob("*") if p.is_file()),
            "exported_items": exported, "withheld_items": len(manifest.get("withheld_cross_split_marked", [])),
            "review_sheets": sheets,
            "candidates": int(pd.read_parquet(data / "tables" / "qa_candidates.parquet", columns=["unit_id"]).shape[0]),
            "floor_s": round(decode + encode, 3), "floor_decode_s": round(decode, 3), "floor_encode_s": round(encode, 3),
            "png_files_per_item": round((len(written) - sheets) / max(exported, 1), 4)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2, help="builds per size, interleaved (the ratio uses the minima)")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp dir)")
    ap.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if not SHARED.is_dir():
        raise SystemExit(f"needs the real CT in {SHARED} (clone with ../shared beside the repo)")
    if args.one is not None:
        print(json.dumps(one_size(args.one, args.work, args.workers)))
        return {}
    import tempfile
    results = []
    for rep in range(args.repeats):  # sizes interleaved, so a slow spell of the machine hits both
        for n in args.sizes:
            work = Path(tempfile.mkdtemp(prefix=f"scale{n}_", dir=args.work))
            proc = subprocess.run([sys.executable, "-m", "bench.scale_bench", "--one", str(n), "--work", str(work),
                                   "--workers", str(args.workers)], capture_output=True, text=True, cwd=PROJECT_ROOT)
            if proc.returncode:
                raise SystemExit(proc.stderr[-4000:])
            results.append({"repeat": rep, **json.loads(proc.stdout.strip().splitlines()[-1])})
    out = {"runs": results}
    walls = {n: [r["wall_s"] for r in results if r["volumes"] == n] for n in args.sizes}
    if len(args.sizes) >= 2:
        a, b = args.sizes[0], args.sizes[-1]
        out["wall_min_s"] = {str(n): min(w) for n, w in walls.items()}
        out["wall_ratio"] = round(min(walls[b]) / min(walls[a]), 3)  # noise only adds time: compare the minima
        out["wall_ratio_per_repeat"] = [round(y / x, 3) for x, y in zip(walls[a], walls[b])]
        out["input_ratio"] = b / a
        out["target_wall_ratio"] = 1.5
    out["png_target_holds"] = all(r["png_files"] <= 1.2 * r["exported_items"] + r["review_sheets"] for r in results)
    return report("scale_bench", out)


def report(name: str, out: dict) -> dict:
    """Write bench/out/<name>.json and print it."""
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{name}.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
