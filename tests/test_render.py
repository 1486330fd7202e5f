"""Visual prompts: pixel-exact overlays on real masks, colour choice, twins, flags, sheets."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from pipelines.config import PipelineConfig
from pipelines.ingest import ingest
from pipelines.registry import load_registry
from pipelines.render import box_ring, contour_ring, render_dataset, thickness
from pipelines.review import contact_sheet
from pipelines.standardize.regions import decode_rle
from pipelines.standardize.run import standardize_dataset
from tests.conftest import HAVE_SHARED


def build(cfg: PipelineConfig, ds: str, limit: int | None = None):
    src = load_registry(cfg.registry).get(ds)
    samples = ingest(src, cfg).samples
    std = standardize_dataset(src, cfg, samples.slice(0, limit) if limit else samples, cfg.data_root)
    return std, render_dataset(ds, std.slices, std.regions, cfg, cfg.data_root)


def rgb(cfg, rel):
    return cv2.cvtColor(cv2.imread(str(cfg.data_root / rel)), cv2.COLOR_BGR2RGB)


def check_pixels(cfg: PipelineConfig, std, prompts) -> dict[str, int]:
    """Every drawn pixel is where the region says, and nothing else changed."""
    regions = {r["region_id"]: r for r in std.regions.to_pylist()}
    slices = {s["image_id"]: s for s in std.slices.to_pylist()}
    seen: dict[str, int] = {}
    for p in prompts.to_pylist():
        if p["granularity"] == "image" or not p["png_path"]:
            continue
        base = rgb(cfg, slices[p["image_id"]]["png_path"]).astype(int)
        out = rgb(cfg, p["png_path"]).astype(int)
        members = [regions[m] for m in p["member_region_ids"]]
        h, w = base.shape[:2]
        params = json.loads(p["render_params"])
        color = np.array(params["color"])
        changed = (out != base).any(axis=2)
        if p["granularity"] == "box":
            (m,) = members
            ring = box_ring((h, w), m["bbox"], thickness(w, h, cfg.render))
            assert (out[ring] == color).all()
            assert not changed[~ring].any()
        else:
            mask = np.zeros((h, w), bool)
            for m in members:
                mask |= decode_rle(m["mask_rle"], m["height"], m["width"])
            if p["granularity"] == "mask":
                expected = np.clip(np.rint(base[mask] * 0.7 + color * 0.3), 0, 255)
                assert np.abs(out[mask] - expected).max() <= 0  # exact fill inside
                assert not changed[~mask].any()  # nothing outside
            else:
                ring = contour_ring(mask, thickness(w, h, cfg.render))
                assert (out[ring] == color).all() and not changed[~ring].any()
                assert not (ring & mask).any()  # the line is on the boundary, outside the structure
        seen[p["granularity"]] = seen.get(p["granularity"], 0) + 1
    return seen


def test_demo_overlays_pixel_exact(demo_config):
    for ds, grans in (("demo_polyp", {"mask", "contour"}), ("demo_blood_smear", {"box"}),
                      ("demo_ct_abdomen", {"mask", "contour"})):
        std, prompts = build(demo_config, ds)
        assert set(check_pixels(demo_config, std, prompts)) == grans


@pytest.mark.skipif(not HAVE_SHARED, reason="needs ../shared/datasets")
def test_real_masks_and_boxes_pixel_exact(shared_config):
    for ds in ("kvasir_seg", "isbi2012_em", "pyradiomics_mr_nifti"):
        std, prompts = build(shared_config, ds)
        seen = check_pixels(shared_config, std, prompts)
        assert seen["mask"] == seen["contour"] > 0
    std, prompts = build(shared_config, "bccd_voc", limit=4)
    assert prompts.num_rows == std.regions.num_rows  # every box region rendered or flagged
    assert check_pixels(shared_config, std, prompts)["box"] == std.regions.num_rows


def test_colour_choice_on_red_images(demo_config):
    _, polyp = build(demo_config, "demo_polyp")
    _, ct = build(demo_config, "demo_ct_abdomen")
    polyp_params = [json.loads(p["render_params"]) for p in polyp.to_pylist()]
    ct_params = [json.loads(p["render_params"]) for p in ct.to_pylist()]
    assert all(p["red_surroundings"] and p["color"] == [0, 255, 0] for p in polyp_params)
    assert all(not p["red_surroundings"] and p["color"] == [255, 0, 0] for p in ct_params)


def test_twins_and_label_scope(demo_config):
    std, prompts = build(demo_config, "demo_polyp")
    rows = prompts.to_pylist()
    by_twin: dict[str, set] = {}
    for p in rows:
        by_twin.setdefault(p["twin_id"], set()).add(p["granularity"])
    assert all(g == {"mask", "contour"} for g in by_twin.values())
    multi = [p for p in rows if len(p["member_region_ids"]) > 1]
    assert multi and all(p["scope"] == "label" for p in multi)  # blobs of one label drawn together
    n_groups = len({(r["image_id"], r["raw_label"]) for r in std.regions.to_pylist()})
    assert len(by_twin) == n_groups
    inst_cfg = demo_config.model_copy(update={"render": demo_config.render.model_copy(update={"scope": "instance"})})
    _, per_instance = build(inst_cfg, "demo_polyp")
    assert per_instance.num_rows == 2 * std.regions.num_rows
    _, boxes = build(demo_config, "demo_blood_smear")
    assert set(boxes.column("twin_id").to_pylist()) == {None}


def test_flags_instead_of_useless_renders(demo_config, tmp_path):
    std, _ = build(demo_config, "demo_polyp")
    region = std.regions.to_pylist()[0]
    w, h = region["width"], region["height"]
    from pipelines.standardize.regions import encode_rle
    def with_mask(mask):
        ys, xs = np.nonzero(mask)
        return {**region, "region_id": f"r{mask.sum()}", "mask_rle": encode_rle(mask), "area_px": int(mask.sum()),
                "bbox": [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]}
    thin = np.zeros((h, w), bool)
    thin[40:90, 60:62] = True  # 2 px wide
    edge = np.zeros((h, w), bool)
    edge[20:60, w - 1:] = True  # a sliver on the right edge
    import pyarrow as pa

    def flags_of(mask):
        table = pa.Table.from_pylist([with_mask(mask)], schema=std.regions.schema)
        rows = render_dataset("demo_polyp", std.slices, table, demo_config, demo_config.data_root).to_pylist()
        assert all(p["png_path"] == "" for p in rows)
        return {p["flag"] for p in rows}
    assert flags_of(thin) == {"too_small"}
    edge2 = np.zeros((h, w), bool)
    edge2[20:60, w - 3:] = True  # 3 px wide (visible) but wholly in the edge band
    assert flags_of(edge2) == {"border_only"}
    ok = np.zeros((h, w), bool)
    ok[40:60, 40:60] = True
    table = pa.Table.from_pylist([with_mask(ok)], schema=std.regions.schema)
    rows = render_dataset("demo_polyp", std.slices, table, demo_config, demo_config.data_root).to_pylist()
    assert {p["flag"] for p in rows} == {""} and all(p["png_path"] for p in rows)


def test_contact_sheet_deterministic(demo_config):
    _, prompts = build(demo_config, "demo_ct_abdomen")
    a, n = contact_sheet("demo_ct_abdomen", prompts, demo_config, demo_config.data_root)
    b, _ = contact_sheet("demo_ct_abdomen", prompts, demo_config, demo_config.data_root)
    assert a == b and n == demo_config.render.sheet_items
    img = cv2.imdecode(np.frombuffer(a, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape[1] == 6 * (demo_config.render.sheet_thumb + 2)
