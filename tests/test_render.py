"""Visual prompts: pixel-exact overlays on real masks, colour choice, twins, flags, sheets."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pandas as pd
import pytest

from pipelines.config import PipelineConfig
from pipelines.ingest import ingest
from pipelines.candidates.rows import targets
from pipelines.sources.registry import load_registry
from scipy import ndimage

from pipelines.imageio import encode_png
from pipelines.render.items import DatasetTables, render_items
from pipelines.render.review import contact_sheet
from pipelines.standardize.display import display_size, mask_to_display, to_display
from pipelines.standardize.regions import decode_rle
from pipelines.standardize.run import SamplePlanes, standardize_dataset
from pipelines.taxonomy import KIND_GRANULARITIES
from tests.conftest import HAVE_SHARED


def build(cfg: PipelineConfig, ds: str, limit: int | None = None):
    """Describe a dataset, then render every target at every granularity (no selection): the render
    step's output for all of it, and the rows it came from."""
    src = load_registry(cfg.registry).get(ds)
    samples = ingest(src, cfg).samples
    samples = samples.slice(0, limit) if limit else samples
    std = standardize_dataset(src, cfg, samples, cfg.data_root)
    t = targets(std.regions.to_pandas(), cfg.render.scope)
    items = pd.DataFrame([{"item_id": f"{r.target_id}_{g}", "dataset_id": ds, "image_id": r.image_id,
                           "granularity": g, "source_region_ids": list(r.member_region_ids), "scope": r.scope,
                           "generator_params": None, "variant": None}
                          for r in t.itertuples() for g in KIND_GRANULARITIES[r.kind]])
    tables = {ds: DatasetTables(src, samples.to_pandas(), std.slices.to_pandas(), std.regions.to_pandas())}
    rendered = render_items(items, tables, cfg, cfg.data_root / "rendered").table
    return std, items.merge(rendered.to_pandas(), on="item_id"), samples


def rgb(cfg, rel):
    return cv2.cvtColor(cv2.imread(str(cfg.data_root / rel)), cv2.COLOR_BGR2RGB)


def base_images(cfg: PipelineConfig, ds: str, std, samples) -> dict[str, np.ndarray]:
    """The unmarked display image of every slice, re-derived independently of the render step."""
    src = load_registry(cfg.registry).get(ds)
    out = {}
    by_sample = {r["sample_id"]: r for r in samples.to_pylist()}
    for sample_id, part in std.slices.to_pandas().groupby("sample_id"):
        planes = SamplePlanes(by_sample[sample_id], src, cfg)
        for sl in part.to_dict("records"):
            geo = display_size(sl["width"], sl["height"], sl["spacing"], cfg.display.max_image_side)
            out[sl["image_id"]] = to_display(planes.rgb(sl), geo)
    return out


def line_width(w: int, h: int, cfg: PipelineConfig) -> int:
    """The documented line width: ``line_fraction`` of the shorter display side, rounded, at least
    ``min_thickness`` (written out here, not read from the renderer)."""
    return max(cfg.render.min_thickness, int(round(cfg.render.line_fraction * min(w, h))))


def ring_around_box(shape: tuple[int, int], box: list[float], t: int) -> np.ndarray:
    """Pixels outside the box (x0, y0, x1, y1; x1 and y1 exclusive, rounded to whole pixels) whose chessboard
    distance to it is 1..t, from each pixel's own coordinates (no slicing shared with the renderer)."""
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    ys, xs = np.indices(shape)
    dx = np.maximum(np.maximum(x0 - xs, xs - (x1 - 1)), 0)
    dy = np.maximum(np.maximum(y0 - ys, ys - (y1 - 1)), 0)
    d = np.maximum(dx, dy)
    return (d >= 1) & (d <= t)


def ring_around_mask(mask: np.ndarray, t: int) -> np.ndarray:
    """Pixels outside the mask within chessboard distance t of it (SciPy's distance transform, not a dilation)."""
    d = ndimage.distance_transform_cdt(~mask, metric="chessboard")
    return (d >= 1) & (d <= t)


def check_pixels(cfg: PipelineConfig, ds: str, std, prompts: pd.DataFrame, samples) -> dict[str, int]:
    """Every drawn pixel is where the region says, and nothing else changed."""
    regions = {r["region_id"]: r for r in std.regions.to_pylist()}
    slices = {s["image_id"]: s for s in std.slices.to_pylist()}
    bases = base_images(cfg, ds, std, samples)
    seen: dict[str, int] = {}
    for p in prompts.to_dict("records"):
        base = bases[p["image_id"]].astype(int)
        out = rgb(cfg, p["image_path"]).astype(int)
        assert out.shape == base.shape
        if p["granularity"] == "image":
            assert (out == base).all()
            continue
        members = [regions[m] for m in p["source_region_ids"]]
        h, w = base.shape[:2]
        sl = slices[p["image_id"]]
        geo = display_size(sl["width"], sl["height"], sl["spacing"], cfg.display.max_image_side)
        params = json.loads(p["render_params"])
        color = np.array(params["color"])
        changed = (out != base).any(axis=2)
        t = line_width(w, h, cfg)
        assert params["color"] in [list(c) for c in cfg.render.mark_palette.values()]
        if p["granularity"] == "box":
            (m,) = members
            sx, sy = w / sl["width"], h / sl["height"]  # display px per stored px, from the PNG's own size
            x0, y0, x1, y1 = m["bbox"]
            ring = ring_around_box((h, w), [x0 * sx, y0 * sy, x1 * sx, y1 * sy], t)
            assert ring.any()
            assert (out[ring] == color).all()
            assert not changed[~ring].any()
        else:
            stored = np.zeros((sl["height"], sl["width"]), bool)
            for m in members:
                stored |= decode_rle(m["mask_rle"], m["height"], m["width"])
            mask = mask_to_display(stored, geo)
            if p["granularity"] == "mask":
                expected = np.clip(np.rint(base[mask] * 0.7 + color * 0.3), 0, 255)
                assert np.abs(out[mask] - expected).max() <= 0  # exact fill inside
                assert not changed[~mask].any()  # nothing outside
            else:
                ring = ring_around_mask(mask, t)
                assert ring.any()
                assert (out[ring] == color).all() and not changed[~ring].any()
                assert not (ring & mask).any()  # the line is on the boundary, outside the structure
        seen[p["granularity"]] = seen.get(p["granularity"], 0) + 1
    return seen


def test_demo_overlays_pixel_exact(demo_config):
    for ds, grans in (("demo_polyp", {"mask", "contour"}), ("demo_blood_smear", {"box"}),
                      ("demo_ct_abdomen", {"mask", "contour"})):
        std, prompts, samples = build(demo_config, ds)
        assert set(check_pixels(demo_config, ds, std, prompts, samples)) == grans


@pytest.mark.skipif(not HAVE_SHARED, reason="needs ../shared/datasets")
def test_real_masks_and_boxes_pixel_exact(shared_config):
    for ds in ("kvasir_seg", "isbi2012_em", "pyradiomics_mr_nifti"):
        std, prompts, samples = build(shared_config, ds)
        seen = check_pixels(shared_config, ds, std, prompts, samples)
        assert seen["mask"] == seen["contour"] > 0
    std, prompts, samples = build(shared_config, "bccd_voc", limit=4)
    assert len(prompts) == std.regions.num_rows  # every box region rendered
    assert check_pixels(shared_config, "bccd_voc", std, prompts, samples)["box"] == std.regions.num_rows


def wcag_luminance(rgb: np.ndarray) -> np.ndarray:
    """Relative luminance as WCAG 2 defines it (sRGB linearised, 0.2126 R + 0.7152 G + 0.0722 B)."""
    c = np.asarray(rgb, float) / 255.0
    c = np.where(c <= 0.03928, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return 0.2126 * c[..., 0] + 0.7152 * c[..., 1] + 0.0722 * c[..., 2]


def wcag_ratio(a: float, b: float) -> float:
    return (max(a, b) + 0.05) / (min(a, b) + 0.05)


def test_mark_colour_contrasts_with_its_background(demo_config):
    """Read back from the written PNGs: every line's colour has a contrast ratio >= 3 against the pixels beside the
    line (a band of the line's width on both sides, as drawn), and every fill against the pixels under and around
    it. On the red polyp phantoms the old fixed red/green pair failed this (red on red)."""
    names = {}
    for ds in ("demo_polyp", "demo_ct_abdomen"):
        std, prompts, samples = build(demo_config, ds)
        bases = base_images(demo_config, ds, std, samples)
        for p in prompts.to_dict("records"):
            if p["granularity"] == "image":
                continue
            params = json.loads(p["render_params"])
            colour = np.array(params["color"])
            out = rgb(demo_config, p["image_path"]).astype(int)
            base = bases[p["image_id"]]
            drawn = (out != base).any(axis=2)
            h, w = out.shape[:2]
            t = line_width(w, h, demo_config)
            grown = cv2.dilate(drawn.astype(np.uint8), np.ones((2 * t + 1, 2 * t + 1), np.uint8)) > 0
            if p["granularity"] == "mask":
                zone = base[grown]  # the tint is seen over the structure and beside it
            else:
                assert (out[drawn] == colour).all()
                zone = out[grown & ~drawn]  # beside the line, as exported
            ratio = wcag_ratio(float(wcag_luminance(colour)), float(wcag_luminance(zone).mean()))
            assert ratio >= 3.0 - 1e-6, (ds, p["item_id"], params)
            assert ratio == pytest.approx(params["contrast"], abs=0.02)
            names.setdefault(ds, set()).add(params["color_name"])
    assert "red" not in names["demo_polyp"]  # red on a red mucosa phantom never reaches 3
    assert len(names["demo_ct_abdomen"]) > 1  # chosen per image: light on dark soft tissue, dark on bright bone


def test_label_scope_groups_components(demo_config):
    std, prompts, _ = build(demo_config, "demo_polyp")
    multi = prompts[prompts["source_region_ids"].map(len) > 1]
    assert len(multi) and (multi["scope"] == "label").all()  # blobs of one label drawn together
    n_groups = len({(r["image_id"], r["raw_label"]) for r in std.regions.to_pylist()})
    assert prompts["item_id"].str.rsplit("_", n=1).str[0].nunique() == n_groups
    inst_cfg = demo_config.model_copy(update={"render": demo_config.render.model_copy(update={"scope": "instance"})})
    _, per_instance, _ = build(inst_cfg, "demo_polyp")
    assert len(per_instance) == 2 * std.regions.num_rows


def test_display_geometry_square_pixels_and_size_bound():
    geo = display_size(512, 20, [0.98, 2.0], 1024)  # a thin-slab DICOM coronal plane
    assert (geo.width, geo.height) == (512, 41)
    geo = display_size(3024, 4032, [1.0, 1.0], 1024)  # a phone-sized X-ray
    assert (geo.width, geo.height) == (768, 1024)
    img = np.zeros((4032, 3024, 3), np.uint8)
    img[1000:3000, 500:2500] = 200
    small = to_display(img, geo)
    assert small.shape == (1024, 768, 3) and small[260:755, 130:630].min() == 200 and small[:250].max() == 0
    mask = np.zeros((4032, 3024), bool)
    mask[1000:3000, 500:2500] = True
    assert abs(mask_to_display(mask, geo).sum() - mask.sum() * geo.scale_x * geo.scale_y) < 2000


def test_contact_sheet_deterministic(demo_config):
    _, prompts, _ = build(demo_config, "demo_ct_abdomen")
    items = [{"image_path": p, "caption": g} for p, g in zip(prompts["image_path"], prompts["granularity"])]
    a, n = contact_sheet("demo_ct_abdomen", items, demo_config, demo_config.data_root)
    b, _ = contact_sheet("demo_ct_abdomen", list(reversed(items)), demo_config, demo_config.data_root)
    assert a == b and n == demo_config.render.sheet_items
    img = cv2.imdecode(np.frombuffer(a, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape[1] == 6 * (demo_config.render.sheet_thumb + 2)


@pytest.mark.parametrize("row_filter", ["up", "sub", "none"])
@pytest.mark.parametrize("shape", [(1, 1, 3), (7, 5, 3), (64, 33, 3), (9, 11), (1, 40)])
def test_png_encoder_is_lossless_for_every_reader(shape, row_filter):
    """The item PNGs come from our own container around libdeflate: OpenCV, Pillow and zlib+numpy (the scanlines
    unfiltered by hand from PNG's definition of the filters) all read back the exact pixels, and the bytes do
    not depend on anything but the pixels and the settings."""
    import io
    import struct
    import zlib

    from PIL import Image

    from pipelines.imageio import encode_png
    rng = np.random.default_rng(sum(shape))
    pixels = rng.integers(0, 256, shape, dtype=np.uint8)
    pixels[: shape[0] // 2] //= 16  # runs as well as noise
    data = encode_png(pixels, 2, row_filter)
    assert data == encode_png(pixels.copy(), 2, row_filter)
    flag = cv2.IMREAD_COLOR if pixels.ndim == 3 else cv2.IMREAD_GRAYSCALE
    via_cv2 = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    assert np.array_equal(cv2.cvtColor(via_cv2, cv2.COLOR_BGR2RGB) if pixels.ndim == 3 else via_cv2, pixels)
    with Image.open(io.BytesIO(data)) as im:
        assert im.mode == ("RGB" if pixels.ndim == 3 else "L")
        assert np.array_equal(np.asarray(im), pixels)
    # by hand: IHDR says 8 bits; IDAT inflates to one filter byte + the row's bytes per row; undo the filter
    width, height, depth = struct.unpack(">IIB", data[16:25])
    assert (height, width, depth) == (shape[0], shape[1], 8)
    idat = data.index(b"IDAT")
    size = struct.unpack(">I", data[idat - 4:idat])[0]
    rows = np.frombuffer(zlib.decompress(data[idat + 4:idat + 4 + size]), np.uint8).reshape(shape[0], -1)
    step = 3 if pixels.ndim == 3 else 1
    got = rows[:, 1:].astype(np.int64)
    for y in range(shape[0]):
        kind = int(rows[y, 0])
        assert kind == {"none": 0, "sub": 1, "up": 2}[row_filter]
        for x in range(got.shape[1]):
            left = got[y, x - step] if x >= step else 0
            up = got[y - 1, x] if y else 0
            got[y, x] = (got[y, x] + (left if kind == 1 else up if kind == 2 else 0)) % 256
    assert np.array_equal(got.reshape(shape), pixels)


def test_png_encoder_refuses_what_it_cannot_write():
    from pipelines.imageio import encode_png
    with pytest.raises(ValueError, match="uint8"):
        encode_png(np.zeros((4, 4, 3), np.uint16))
    with pytest.raises(ValueError, match="uint8"):
        encode_png(np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="row filter"):
        encode_png(np.zeros((4, 4, 3), np.uint8), row_filter="paeth")


def test_planes_cut_in_stacks_equal_planes_cut_one_by_one(demo_config, monkeypatch):
    """SamplePlanes.rgb_each (an axis at a time, a stack of planes per pass) gives each slice row exactly what
    rgb gives it alone, over every axis and window of a CT and an MR volume; stacks of two planes force several
    passes per axis."""
    import pipelines.standardize.run as run
    monkeypatch.setattr(run, "chunks", lambda idx, _pixels: [idx[i:i + 2] for i in range(0, len(idx), 2)])
    for ds in ("demo_ct_abdomen", "demo_mr_brain"):
        src = load_registry(demo_config.registry).get(ds)
        samples = ingest(src, demo_config).samples.slice(0, 1)
        std = standardize_dataset(src, demo_config, samples, demo_config.data_root)
        rows = std.slices.to_pandas().sample(frac=1.0, random_state=0).to_dict("records")  # any order in
        planes = SamplePlanes(samples.to_pylist()[0], src, demo_config)
        seen = {(r["axis"], r["index"], r["intensity_params"]) for r in rows}
        assert {r["axis"] for r in rows} == {"axial", "coronal", "sagittal"} and len(seen) == len(rows)
        got = list(planes.rgb_each(rows))
        assert sorted(r["image_id"] for r, _ in got) == sorted(r["image_id"] for r in rows)
        for r, pixels in got:
            assert np.array_equal(pixels, planes.rgb(r)), (ds, r["axis"], r["index"])


@pytest.mark.parametrize("seed", range(6))
def test_marks_drawn_inside_their_box_equal_marks_drawn_over_the_image(seed):
    """paint, draw_mask and background work inside the mark's bounding box: the same pixels as the whole-image
    formulas, for scattered, mirrored (non-contiguous) and empty masks."""
    from pipelines.render.draw import background, draw_mask, luminance, paint
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (61, 47, 3), dtype=np.uint8)
    where = np.zeros((61, 47), bool)
    if seed:
        y, x = rng.integers(0, 50, 2)
        where[y:y + rng.integers(1, 11), x:x + rng.integers(1, 11)] = rng.random((1, 1)) < 2
        where[rng.integers(0, 61, seed), rng.integers(0, 47, seed)] = True
    for w in (where, where[:, ::-1]):
        want = rgb.copy()
        want[w] = (250, 10, 40)
        assert np.array_equal(paint(rgb, w, (250, 10, 40)), want)
        blend = np.clip(np.rint(rgb[w].astype(np.float64) * 0.6 + np.array([0, 200, 90], np.float64) * 0.4), 0, 255)
        want = rgb.copy()
        want[w] = blend.astype(np.uint8)
        assert np.array_equal(draw_mask(rgb, w, (0, 200, 90), 0.4), want)
        whole = float(luminance(rgb[w] if w.any() else rgb.reshape(-1, 3)).mean())
        assert background(rgb, w) == whole


def test_items_drawn_alike_share_one_encoding_and_each_equals_its_picture_drawn_alone(demo_config, monkeypatch):
    """Items of one plane that `_draw` would draw alike (counts of two structures on the unmarked slice, an item
    and its 'as shown' consistency copy) are drawn and encoded once; every item that differs in what is drawn
    (granularity, perturbation, mirroring, outline colour) keeps a picture of its own. The reference: each item
    rendered on its own, in a render step of one item."""
    import pipelines.render.items as render
    ds = "demo_ct_abdomen"
    src = load_registry(demo_config.registry).get(ds)
    samples = ingest(src, demo_config).samples.slice(0, 1)
    std = standardize_dataset(src, demo_config, samples, demo_config.data_root)
    regions = std.regions.to_pandas()
    target = regions[regions["kind"] == "mask"].iloc[0]
    marks = lambda colour, mirrored: json.dumps({"generator": "laterality", "mirrored": mirrored,  # noqa: E731
                                                 "marks": [{"colour": colour, "regions": [target["region_id"]]}]})
    count = lambda structure: json.dumps({"generator": "instance_count", "marks": [], "structure": structure})  # noqa: E731
    noise = json.dumps({"kind": "gaussian_noise", "severity": 2})
    rows = [("count_a", "image", [], count("liver"), None), ("count_b", "image", [], count("spleen"), None),
            ("contour", "contour", [target["region_id"]], None, None),
            ("contour_as_shown", "contour", [target["region_id"]], None, json.dumps({"kind": "as_shown"})),
            ("contour_noisy", "contour", [target["region_id"]], None, noise),
            ("mask", "mask", [target["region_id"]], None, None),
            ("blue", "contour", [target["region_id"]], marks("blue", False), None),
            ("blue_mirrored", "contour", [target["region_id"]], marks("blue", True), None),
            ("green", "contour", [target["region_id"]], marks("green", False), None)]
    items = pd.DataFrame([{"item_id": i, "dataset_id": ds, "image_id": target["image_id"], "granularity": g,
                           "source_region_ids": m, "generator_params": p, "variant": v, "answer": "A"}
                          for i, g, m, p, v in rows])
    tables = {ds: DatasetTables(src, samples.to_pandas(), std.slices.to_pandas(), regions)}
    cfg = demo_config.model_copy(update={"benchmark": demo_config.benchmark.model_copy(update={"render_workers": 1})})
    encoded = []
    monkeypatch.setattr(render, "encode_png", lambda *a: encoded.append(1) or encode_png(*a))
    together = render_items(items, tables, cfg, cfg.data_root / "together", "together").table.to_pandas().set_index("item_id")
    assert len(encoded) == len(rows) - 2  # the second count and the 'as shown' copy were not drawn again
    for i in items["item_id"]:
        alone = render_items(items[items["item_id"] == i], tables, cfg, cfg.data_root / i, i).table
        alone = alone.to_pandas().set_index("item_id").loc[i]
        assert (cfg.data_root / together.loc[i, "image_path"]).read_bytes() == \
            (cfg.data_root / alone["image_path"]).read_bytes(), i
        facts = ["width", "height", "render_params", "sha256", "phash", "mark_pixels", "mirror_key"]
        assert together.loc[i, facts].tolist() == alone[facts].tolist(), i
    pictures = together["sha256"]
    assert pictures["count_a"] == pictures["count_b"] and pictures["contour"] == pictures["contour_as_shown"]
    assert pictures.drop(["count_b", "contour_as_shown"]).is_unique
