"""Describe works a stack of planes at a time; these pin the batched code to the per-plane references."""

import numpy as np
from PIL import Image
from pycocotools import mask as cocomask

from pipelines.standardize.display import lanczos_32
from pipelines.standardize.planes import plane, stack
from pipelines.standardize.regions import coco_strings, describe_stack


def test_stacked_lanczos_equals_pillow_on_every_shape_kind():
    """The matrix resize gives Pillow's exact 32 x 32 LANCZOS bytes: shrinking, growing, one axis only, tall,
    wide and square planes (Pillow picks its pass order from the shape; both orders are exercised)."""
    rng = np.random.default_rng(3)
    shapes = [(32, 32), (32, 90), (90, 32), (5, 7), (91, 19), (19, 91), (144, 155), (233, 95), (100, 100),
              (101, 100), (3, 300), (512, 512)] + [tuple(rng.integers(2, 260, 2)) for _ in range(40)]
    for h, w in shapes:
        planes = rng.integers(0, 256, (3, h, w), dtype=np.uint8)
        planes[1] = np.clip(np.cumsum(planes[1], axis=0) // 40, 0, 255)
        want = np.stack([np.asarray(Image.fromarray(p).resize((32, 32), Image.LANCZOS)) for p in planes])
        assert np.array_equal(lanczos_32(planes), want), (h, w)


def test_describe_stack_equals_per_plane_description():
    """Area, bbox, centroid from the column runs equal a per-pixel computation; the RLE equals pycocotools' per
    mask; instances under the floor are counted, not described; empty planes and first/last pixels included."""
    rng = np.random.default_rng(0)
    for t in range(60):
        m, (h, w) = int(rng.integers(1, 5)), rng.integers(3, 50, 2)
        st = rng.integers(0, 9, (m, h, w)).astype(np.int32)
        st[rng.random((m, h, w)) < 0.6] = 0
        if t % 5 == 0:
            st[:] = 0
            st[0, :3, :2], st[-1, -1, -1] = 3, 5
        if t % 7 == 0:
            st[:] = 2
        floor = int(rng.integers(1, 6))
        d = describe_stack(st, floor)
        k = dropped = 0
        for p in range(m):
            for i in np.unique(st[p])[np.unique(st[p]) > 0]:
                mask = st[p] == i
                if mask.sum() < floor:
                    dropped += 1
                    continue
                ys, xs = np.nonzero(mask)
                assert (d.plane[k], d.ids[k], d.area[k]) == (p, i, mask.sum())
                assert d.bbox[k].tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
                assert np.allclose(d.centroid[k], [xs.mean(), ys.mean()], rtol=0, atol=1e-12)
                assert d.rle[k] == cocomask.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode()
                k += 1
        assert (k, dropped) == (len(d.ids), d.dropped)


def test_coco_strings_handles_large_and_negative_differences():
    counts = np.array([0, 5, 70000, 3, 1, 2**31 - 7, 4, 9, 0, 1])
    want = [cocomask.frPyObjects([{"counts": c, "size": [1, sum(c)]}], 1, sum(c))[0]["counts"].decode()
            for c in ([0, 5, 70000, 3, 1, 2**31 - 7], [4, 9, 0, 1])]
    assert coco_strings(counts, np.array([6, 4])) == want
    assert coco_strings(np.zeros(0), np.array([0])) == [""]


def test_stack_matches_plane_on_every_axis():
    vol = np.arange(4 * 5 * 6).reshape(4, 5, 6)
    for axis, n in (("axial", 4), ("coronal", 5), ("sagittal", 6)):
        idx = np.array([0, n - 1])
        for j, i in enumerate(idx):
            assert np.array_equal(stack(vol, axis, idx)[j], plane(vol, axis, int(i)))
    # sagittal planes are gathered a block of axial planes at a time: depths that are not a multiple of the
    # block, indices unsorted or repeated, strided views and other types give the planes one by one
    rng = np.random.default_rng(6)
    for case in range(20):
        z, y, x = (int(v) for v in rng.integers(1, 14, 3))
        vol = rng.integers(-500, 500, (z, y, 2 * x)).astype([np.int16, np.float32, np.uint8][case % 3])
        vol = vol[:, :, ::2] if case % 2 else np.ascontiguousarray(vol[:, :, :x])
        idx = rng.integers(0, x, int(rng.integers(0, 2 * x)))
        got = stack(vol, "sagittal", idx)
        assert got.shape == (len(idx), z, y) and got.dtype == vol.dtype
        for j, i in enumerate(idx):
            assert np.array_equal(got[j], plane(vol, "sagittal", int(i))), (case, j)
