"""Ingest of volumes: one streamed pass per NIfTI (the same facts as a full read), grids compared from geometry
alone, and memory bounded by a slab, not by the volume."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import textwrap

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from pipelines.config import PROJECT_ROOT
from pipelines.volume import Grid, array_facts, reorient, reoriented_grid, scan_volume


def test_reoriented_grid_is_what_reorienting_the_voxels_gives():
    """Every axis permutation and flip, tilted a little, into LPS and RAS: the grid computed from the geometry
    equals the grid of the image SimpleITK actually reorients."""
    rng = np.random.default_rng(0)
    for perm, signs in itertools.product(itertools.permutations(range(3)), itertools.product([1, -1], repeat=3)):
        d = np.zeros((3, 3))
        for i, p in enumerate(perm):
            d[p, i] = signs[i]
        tilt = sitk.Euler3DTransform()
        tilt.SetRotation(*rng.uniform(-0.2, 0.2, 3))
        img = sitk.Image([5, 7, 9], sitk.sitkUInt8)
        img.SetDirection((np.array(tilt.GetMatrix()).reshape(3, 3) @ d).ravel().tolist())
        img.SetSpacing(rng.uniform(0.5, 3, 3).tolist())
        img.SetOrigin(rng.uniform(-100, 100, 3).tolist())
        for code in ("LPS", "RAS"):
            want, got = Grid.of(reorient(img, code)), reoriented_grid(Grid.of(img), code)
            assert want.size == got.size
            assert np.allclose(want.spacing, got.spacing) and np.allclose(want.direction, got.direction)
            assert np.allclose(want.origin, got.origin, atol=1e-9)


def test_value_counts_equal_bincount_in_any_memory_order():
    """The label tally's per-value counts (OpenCV's histogram for 8/16-bit slabs) against np.bincount of the
    values, for C- and column-major slabs of every integer type a label volume comes in."""
    from pipelines.volume import _value_counts
    rng = np.random.default_rng(4)
    for case, dtype in enumerate([np.uint8, np.uint16, np.int16, np.int32] * 10):
        high = int(rng.integers(0, 250 if dtype == np.uint8 else 5000))
        data = rng.integers(0, high + 1, tuple(int(v) for v in rng.integers(1, 25, 3))).astype(dtype)
        if case % 2:
            data = np.asfortranarray(data)
        got = _value_counts(data, int(data.max()))
        want = np.bincount(data.ravel().astype(np.int64), minlength=int(data.max()) + 1)
        assert got.dtype == np.int64 and np.array_equal(got, want), (case, dtype)


@pytest.mark.parametrize("dtype,labels,ext", [(np.int16, False, ".nii.gz"), (np.float32, False, ".nii"),
                                              (np.uint8, True, ".nii.gz"), (np.float32, True, ".nii"),
                                              (np.int16, True, ".nii"), (np.uint16, True, ".nii.gz")])
def test_streamed_pass_finds_what_a_full_read_finds(tmp_path, dtype, labels, ext):
    """Range, label values and non-integer labels from the slab-by-slab nibabel pass equal those of the whole
    volume decoded by SimpleITK (slabs much smaller than the volume, so the pass really runs in pieces)."""
    import pipelines.volume as volume
    rng = np.random.default_rng(1)
    data = rng.integers(0, 7, (40, 30, 50)).astype(dtype) if labels else (rng.normal(0, 300, (40, 30, 50))).astype(dtype)
    if labels and dtype == np.float32:
        data[3, 4, 5] = 2.5
    if dtype == np.uint16:  # values only some slabs hold: the first slab's are fewer than the last one's
        data[39, 29, 49] = 4000
        data[0, 0, 10] = 70
    path = tmp_path / f"v{ext}"
    nib.save(nib.Nifti1Image(data, np.diag([0.8, 0.8, 2.0, 1.0])), str(path))
    old = volume.SLAB_VOXELS
    volume.SLAB_VOXELS = 40 * 30 * 7  # 8 slabs, the last one short
    try:
        got = scan_volume(path, "v", 10**9, labels=labels)
    finally:
        volume.SLAB_VOXELS = old
    img = sitk.ReadImage(str(path))
    arr = sitk.GetArrayFromImage(img)
    assert got.grid == Grid.of(img)
    assert (got.low, got.high) == (float(arr.min()), float(arr.max()))
    if labels:
        assert got.non_integer == (dtype == np.float32)
        assert got.values == sorted(int(v) for v in np.unique(arr.astype(np.int64)) if v != 0)
    assert got == array_facts(arr, Grid.of(img), "v", labels)


@pytest.mark.slow
def test_ingest_of_a_512x512x600_ct_stays_far_below_the_volume(tmp_path):
    """A 512 x 512 x 600 CT with its labels, ingested in a fresh process: the peak resident memory grows by
    well under one float32 copy of the volume (629 MB) over the process's own size (it used to reach 7x)."""
    shape = (512, 512, 600)
    yy, xx = np.mgrid[:512, :512]
    body = ((xx - 256) ** 2 / 200**2 + (yy - 256) ** 2 / 150**2) <= 1
    plane = np.where(body, 40, -1000).astype(np.int16)
    root = tmp_path / "ct"
    for d in ("images", "labels"):
        (root / d).mkdir(parents=True)
    affine = np.diag([0.7, 0.7, 0.8, 1.0])
    nib.save(nib.Nifti1Image(np.broadcast_to(plane[:, :, None], shape).copy(), affine),
             str(root / "images" / "big.nii.gz"))
    lab = np.zeros(shape, np.uint8)
    lab[200:300, 200:280, 100:500] = 1
    nib.save(nib.Nifti1Image(lab, affine), str(root / "labels" / "big.nii.gz"))
    del lab
    (tmp_path / "sources.yaml").write_text(json.dumps({"version": 1, "datasets": [{
        "id": "big", "root": str(root), "format": "volume_pairs", "modality": "CT", "dimension": 3,
        "task_type": "seg", "label_map": str(PROJECT_ROOT / "label_maps" / "demo_ct_abdomen.yaml"),
        "license": "CC0-1.0"}]}))
    script = textwrap.dedent(f"""
        import json, sys
        from pipelines.config import PipelineConfig
        from pipelines.ingest import ingest
        from pipelines.sources.registry import load_registry
        def status(key):
            return int(open("/proc/self/status").read().split(key + ":")[1].split()[0]) * 1024
        cfg = PipelineConfig.load(registry={str(tmp_path / "sources.yaml")!r}, data_root={str(tmp_path / "data")!r})
        source = load_registry(cfg.registry).get("big")
        base = status("VmRSS")
        res = ingest(source, cfg)
        print(json.dumps({{"growth": status("VmHWM") - base, "rows": res.samples.num_rows,
                           "bad": res.quarantine.num_rows}}))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["rows"] == 1 and got["bad"] == 0
    float32 = int(np.prod(shape)) * 4
    assert got["growth"] < 0.25 * float32, got
