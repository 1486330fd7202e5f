"""Standardization benchmark (run: python -m bench.standardize_bench [--copies N] [--workers N]).

Reports, in one run:
* overhead: pipeline wall time / (decode the same volumes + PNG-encode the same emitted slices)
* memory: peak RSS growth of a process that standardizes 1 volume and one that standardizes all,
  divided by the largest volume's float32 size (bounded means: the same for 1 and for all)
* scaling: volumes per second with 1 worker and with N worker processes
Volumes: real CT/MR volumes from ../shared/datasets when present, else the demo phantoms,
replicated ``--copies`` times (symlinks) so the parallel run has enough work.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import SimpleITK as sitk
import yaml

from pipelines.config import PROJECT_ROOT, PipelineConfig
from pipelines.ingest import ingest
from pipelines.sources.registry import load_registry
from pipelines.standardize.run import standardize_dataset

SHARED = PROJECT_ROOT.parent / "shared" / "datasets"


def volume_pairs() -> list[tuple[Path, Path, dict]]:
    if SHARED.is_dir():
        ts = json.loads((SHARED / "totalseg_ct_nifti" / "labels.json").read_text())["labels"]
        pairs = [(SHARED / "totalseg_ct_nifti" / "images" / f"{c}.nii.gz",
                  SHARED / "totalseg_ct_nifti" / "labels" / f"{c}.nii.gz", ("CT", ts)) for c in ("ct_full", "ct_sm")]
        pairs += [(SHARED / "pyradiomics_mr_tumor" / "images" / f"{c}.nii.gz",
                   SHARED / "pyradiomics_mr_tumor" / "labels" / f"{c}.nii.gz", ("MRI", {"1": "tumor"}))
                  for c in ("brain1", "brain2", "breast1")]
        return pairs
    from pipelines.demo import prepare_demo_sources
    demo = prepare_demo_sources(Path(tempfile.mkdtemp()) / "demo") / "ct_abdomen_phantom"
    vals = {"1": "liver", "2": "spleen", "3": "left kidney", "4": "right kidney", "5": "liver tumor", "6": "vertebral column"}
    return [(p, demo / "labels" / p.name, ("CT", vals)) for p in sorted((demo / "images").iterdir())]


def make_registry(work: Path, copies: int, subset: int | None = None) -> Path:
    """One dataset per modality, each volume linked ``copies`` times under distinct names."""
    entries = {}
    for img, lab, (modality, values) in volume_pairs()[:subset]:
        ds = f"bench_{modality.lower()}"
        root = work / ds
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "labels").mkdir(parents=True, exist_ok=True)
        ext = ".nii.gz" if img.name.endswith(".nii.gz") else img.suffix
        for c in range(copies):
            name = f"{img.name[: -len(ext)]}_{c:02d}{ext}"
            for src, sub in ((img, "images"), (lab, "labels")):
                link = root / sub / name
                if not link.exists():
                    link.symlink_to(src)
        lm = work / f"{ds}.yaml"
        merged = yaml.safe_load(lm.read_text())["values"] if lm.exists() else {}
        merged.update({int(k): v for k, v in values.items()})
        lm.write_text(yaml.safe_dump({"values": merged}))
        entries[ds] = {"id": ds, "root": str(root), "format": "volume_pairs", "modality": modality,
                       "dimension": 3, "task_type": "seg", "label_map": str(lm), "license": "bench"}
    path = work / "sources.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "datasets": list(entries.values())}))
    return path


def big_volume_registry(work: Path, copies: int, spacing: float) -> Path:
    """The largest real CT resampled to a finer grid (a realistic clinical size) for the memory run."""
    pairs = volume_pairs()
    img_path, lab_path, (modality, values) = pairs[0]
    img, lab = sitk.ReadImage(str(img_path)), sitk.ReadImage(str(lab_path))
    size = [int(n * s / spacing) for n, s in zip(img.GetSize(), img.GetSpacing())]

    def res(im, interp, pixel):
        return sitk.Resample(im, size, sitk.Transform(), interp, im.GetOrigin(), (spacing,) * 3,
                             im.GetDirection(), 0, pixel)
    root = work / "big"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir(parents=True)
    sitk.WriteImage(res(img, sitk.sitkLinear, sitk.sitkInt16), str(root / "images" / "big_00.nii"))
    sitk.WriteImage(res(lab, sitk.sitkNearestNeighbor, sitk.sitkUInt8), str(root / "labels" / "big_00.nii"))
    for c in range(1, copies):
        for sub in ("images", "labels"):
            (root / sub / f"big_{c:02d}.nii").symlink_to(root / sub / "big_00.nii")
    lm = work / "big.yaml"
    lm.write_text(yaml.safe_dump({"values": {int(k): v for k, v in values.items()}}))
    path = work / "big_sources.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "datasets": [{
        "id": "bench_big", "root": str(root), "format": "volume_pairs", "modality": modality, "dimension": 3,
        "task_type": "seg", "label_map": str(lm), "license": "bench", "options": {}}]}))
    return path


def standardize_all(registry: Path, out: Path, workers: int) -> tuple[float, list]:
    cfg = PipelineConfig.load(registry=registry, data_root=out, ingest={"allow_external_symlinks": True})
    reg = load_registry(registry)
    samples = {ds: ingest(reg.get(ds), cfg).samples for ds in reg.ids}
    t = time.perf_counter()
    results = [standardize_dataset(reg.get(ds), cfg, samples[ds], out, workers=workers) for ds in reg.ids]
    return time.perf_counter() - t, results


def baseline_seconds(registry: Path, out: Path, results: list) -> float:
    """Decode every image+label volume once and PNG-encode every emitted slice once (describe emits none
    unless standardize.write_pngs is 'all')."""
    reg = load_registry(registry)
    t = time.perf_counter()
    for ds in reg.ids:
        for img in sorted((reg.get(ds).root / "images").iterdir()):
            sitk.GetArrayViewFromImage(sitk.ReadImage(str(img)))
            sitk.GetArrayViewFromImage(sitk.ReadImage(str(reg.get(ds).root / "labels" / img.name)))
    decode = time.perf_counter() - t
    arrays = [cv2.imread(str(out / p)) for r in results for p in r.slices.column("png_path").to_pylist() if p]
    t = time.perf_counter()
    for a in arrays:
        cv2.imencode(".png", a, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    return decode + time.perf_counter() - t


def rss_child(registry: str, out: str) -> None:
    """Entry point of the memory subprocess: prints baseline and peak RSS in bytes."""
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    standardize_all(Path(registry), Path(out), workers=1)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"base": base, "peak": peak}))


def largest_float32_bytes(registry: Path) -> int:
    reg = load_registry(registry)
    sizes = []
    for ds in reg.ids:
        for img in (reg.get(ds).root / "images").iterdir():
            r = sitk.ImageFileReader()
            r.SetFileName(str(img))
            r.ReadImageInformation()
            sizes.append(int(np.prod(r.GetSize())) * 4)
    return max(sizes)


def memory_growth(registry: Path, work: Path) -> dict:
    code = ("import sys; from bench.standardize_bench import rss_child; rss_child(sys.argv[1], sys.argv[2])")
    out = subprocess.run([sys.executable, "-c", code, str(registry), str(work / "mem_out")], check=True,
                         capture_output=True, text=True, cwd=PROJECT_ROOT).stdout.strip().splitlines()[-1]
    d = json.loads(out)
    return {"peak_growth_bytes": d["peak"] - d["base"]}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--copies", type=int, default=4)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--big-spacing", type=float, default=1.5, help="mm; grid of the memory-test volume")
    ap.add_argument("--out", type=Path, default=PROJECT_ROOT / "bench" / "out")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="medbench-bench-"))
    registry = make_registry(work, args.copies)
    one_big = big_volume_registry(work / "one", 1, args.big_spacing)
    three_big = big_volume_registry(work / "three", 3, args.big_spacing)
    t1, results = standardize_all(registry, work / "out1", workers=1)
    tn, _ = standardize_all(registry, work / "outn", workers=args.workers)
    base = baseline_seconds(registry, work / "out1", results)
    n_vol = sum(r.slices.num_rows and len(set(r.slices.column("sample_id").to_pylist())) for r in results)
    vol_bytes = largest_float32_bytes(one_big)
    mem_one = memory_growth(one_big, work / "m1")["peak_growth_bytes"]
    mem_all = memory_growth(three_big, work / "m2")["peak_growth_bytes"]
    report = {
        "volumes": n_vol, "slices": sum(r.slices.num_rows for r in results),
        "regions": sum(r.regions.num_rows for r in results),
        "pipeline_s": round(t1, 2), "decode_plus_encode_s": round(base, 2),
        "overhead_ratio": round(t1 / base, 2),
        "memory_volume_float32_mb": round(vol_bytes / 2**20, 1),
        "peak_rss_growth_1_volume_x": round(mem_one / vol_bytes, 2),
        "peak_rss_growth_3_volumes_x": round(mem_all / vol_bytes, 2),
        "workers": args.workers, "volumes_per_s_1_worker": round(n_vol / t1, 2),
        "volumes_per_s_n_workers": round(n_vol / tn, 2), "speedup": round(t1 / tn, 2),
        "cpu_count": os.cpu_count(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "standardize.json").write_text(json.dumps(report, indent=2))
    for k, v in report.items():
        print(f"{k:34s} {v}")
    return report


if __name__ == "__main__":
    main()
