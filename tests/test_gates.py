"""Readability gates, scalable selection, and the check that compares the exported files with the renders."""

from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pipelines.select.units import Features, farthest_point
from pipelines.validity.near_duplicates import dedupe, near_duplicate_pairs
from pipelines.config import PipelineConfig
from pipelines.export.verify import verify_exports
from pipelines.config import RULE_NAMES
from pipelines.gates import apply_gates
from tests.conftest import needs_shared


def unit(uid: str, w: int, h: int, mark: float | None = 400.0, side: float = 20.0, border: bool = False,
         contrast: float = 40.0, ds: str = "d") -> dict:
    return {"unit_id": uid, "granularity": "mask" if mark else "image", "dataset_id": ds, "image_width": w,
            "image_height": h, "contrast": contrast, "mark_pixels": mark,
            "mark_fraction": None if mark is None else mark / (w * h), "mark_min_side": side if mark else None,
            "border_only": border, "source_path": "x", "pipeline_version": "t", "seed": 1}


def test_each_rule_drops_what_it_names_and_counts_it():
    g = PipelineConfig().gates
    units = pd.DataFrame([
        unit("ok", 256, 256), unit("small", 28, 28, mark=None), unit("strip", 600, 100),
        unit("blank", 256, 256, contrast=0.5), unit("dot", 256, 256, mark=20.0),
        unit("tiny_share", 1024, 1024, mark=900.0), unit("thin", 256, 256, side=2.0),
        unit("edge", 256, 256, border=True), unit("both", 28, 28, mark=4.0, side=1.0)])
    res = apply_gates(units, g)
    v = dict(zip(res.verdicts.column("unit_id").to_pylist(), res.verdicts.column("gate").to_pylist()))
    assert v == {"ok": "", "small": "image_too_small", "strip": "image_too_elongated", "blank": "blank_image",
                 "dot": "mark_too_small", "tiny_share": "mark_too_small", "thin": "mark_too_thin",
                 "edge": "mark_on_border", "both": "image_too_small"}
    failed = dict(zip(res.verdicts.column("unit_id").to_pylist(), res.verdicts.column("failed").to_pylist()))
    assert failed["both"] == ["image_too_small", "mark_too_small", "mark_too_thin"]  # every rule is kept
    drops = res.drops.set_index("rule")["dropped"]
    assert drops.sum() == 8 and drops["mark_too_small"] == 2 and set(drops.index) == set(RULE_NAMES)


def test_a_dataset_the_gates_leave_out_is_an_expected_outcome_not_an_error(tmp_path):
    """33 x 41 px planes (nibabel's anatomical.nii) all fail image_too_small: the summary names the dataset under
    the gates, never as an ERROR; a dataset with a readable plane and no item still is an error."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.gates import unreadable_planes
    from pipelines.summary import summarize
    g = PipelineConfig().gates
    tiny = pd.DataFrame({"display_width": [33, 33, 41], "display_height": [41, 25, 25], "contrast": [30.0, 1.0, 30.0]})
    assert unreadable_planes(tiny, g) == {"image_too_small": 3, "blank_image": 1}
    assert unreadable_planes(pd.concat([tiny, pd.DataFrame({"display_width": [128], "display_height": [96],
                                                            "contrast": [30.0]})]), g) == {}
    tables = tmp_path / "tables"
    for ds, geo in (("tiny_mr", tiny), ("big_ct", pd.DataFrame({"display_width": [128], "display_height": [128],
                                                                 "contrast": [30.0]}))):
        for name in ("slices", "regions"):
            (tables / name).mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.Table.from_pandas(geo, preserve_index=False), tables / name / f"{ds}.parquet")
    pq.write_table(pa.table({"dataset_id": ["other"]}), tables / "benchmark.parquet")
    s = summarize(tmp_path, ["tiny_mr", "big_ct"])
    assert s.gated_out() == {"tiny_mr"}
    assert s.gate_warnings() == ["  tiny_mr: none of its planes passes the readability gates' image rules "
                                 "(blank_image 1, image_too_small 3); see docs/gates.md 'Readability gates' "
                                 "(readability_opt_out exempts a dataset explicitly)"]
    assert s.empty_datasets() == ["  ERROR big_ct: 1 regions, 0 items",
                                  "  tiny_mr: 0 items, as expected: none of its planes passes the readability gates' "
                                  "image rules (blank_image 1, image_too_small 3)"]
    assert "ERROR tiny_mr" not in s.render()


def test_registry_opt_out_exempts_only_that_dataset_and_rule():
    g = PipelineConfig().gates
    units = pd.DataFrame([unit("a", 28, 28, mark=None, ds="mnist"), unit("b", 28, 28, mark=None, ds="other"),
                          unit("c", 28, 28, mark=None, contrast=0.1, ds="mnist")])
    res = apply_gates(units, g, {"mnist": ["image_too_small"]})
    v = dict(zip(res.verdicts.column("unit_id").to_pylist(), res.verdicts.column("gate").to_pylist()))
    assert v == {"a": "", "b": "image_too_small", "c": "blank_image"}
    assert res.drops.query("dataset_id == 'mnist' and rule == 'image_too_small'")["opted_out"].item()


def test_registry_rejects_unknown_opt_out_rule(tmp_path, demo_registry):
    import yaml

    from pipelines.source import RegistryError
    from pipelines.sources.registry import load_registry
    doc = yaml.safe_load(demo_registry.read_text())
    doc["datasets"][0]["readability_opt_out"] = ["image_too_smol"]
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(RegistryError, match="image_too_smol"):
        load_registry(path)


def _brute_greedy(h: np.ndarray, bits: int) -> np.ndarray:
    kept, keep = [], np.zeros(len(h), bool)
    for i, x in enumerate(h.tolist()):
        if all(bin(x ^ k).count("1") > bits for k in kept):
            kept.append(x)
            keep[i] = True
    return keep


def _clustered_hashes(rng, n: int, centres: int, max_flips: int) -> np.ndarray:
    base = rng.integers(0, 2**63, size=centres, dtype=np.uint64)
    out = []
    for _ in range(n):
        b = int(base[rng.integers(centres)])
        for f in rng.choice(64, int(rng.integers(0, max_flips + 1)), replace=False):
            b ^= 1 << int(f)
        out.append(b)
    return np.array(out, dtype=np.uint64)


def test_bucketed_near_duplicates_equal_all_pairs():
    rng = np.random.default_rng(7)
    for trial in range(8):
        h = _clustered_hashes(rng, 400, 25, 8)
        h = np.unique(h)  # pairs are defined over distinct hashes
        pairs = {tuple(p) for p in near_duplicate_pairs(h, 4).tolist()}
        brute = {(i, j) for i in range(len(h)) for j in range(i + 1, len(h))
                 if bin(int(h[i]) ^ int(h[j])).count("1") <= 4}
        assert pairs == brute, trial
        h2 = _clustered_hashes(rng, 300, 20, 7)  # with exact repeats
        assert (dedupe(h2, 4) == _brute_greedy(h2, 4)).all(), trial


def test_vectorized_farthest_point_matches_the_plain_greedy():
    rng = np.random.default_rng(3)
    n = 300
    units = pd.DataFrame({"dataset_id": rng.choice(["a", "b", "c"], n), "group_id": rng.choice(list("pqrstuvw"), n),
                          "axis": rng.choice(["axial", "coronal", "2d"], n), "position": rng.random(n),
                          "phash": [f"{int(x):016x}" for x in rng.integers(0, 2**63, n, dtype=np.uint64)]})
    f = Features(units)
    d = np.array([f.distance_to(i) for i in range(n)])
    chosen, best = [0], d[0].copy()
    while len(chosen) < 30:  # the textbook max-min loop over a full distance matrix
        best[chosen] = -1
        i = int(np.argmax(best))
        chosen.append(i)
        best = np.minimum(best, d[i])
    assert farthest_point(f, 30) == chosen


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def test_export_check_compares_payloads_with_renders_and_fails_on_bad_items(tmp_path, monkeypatch):
    """A 28x28 image, a 6:1 strip, an over-size image and a contour item whose mark was never drawn fail on their
    recorded render facts; a Parquet shard carrying other bytes than the rendered PNG (a valid image all the
    same) and a TSV row of an item nobody rendered are caught by hash; a good item passes in both formats."""
    import hashlib

    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.export.verify import cross_split_duplicates
    from pipelines.render.draw import mark_pixels
    cfg = PipelineConfig()
    good = np.full((128, 128, 3), 90, np.uint8)
    good[40:44, 40:90] = (255, 0, 0)
    good[86:90, 40:90] = (255, 0, 0)
    assert mark_pixels(good, [(255, 0, 0), (0, 255, 0)]) == 2 * 4 * 50  # two 4 x 50 bars, counted by hand
    images = {0: (good, "Box level"), 1: (np.full((28, 28, 3), 90, np.uint8), "Image level"),
              2: (np.full((100, 600, 3), 90, np.uint8), "Mask level"),
              3: (np.full((128, 128, 3), 90, np.uint8), "Contour level"),
              4: (np.full((1100, 900, 3), 90, np.uint8), "Image level"), 5: (good, "Box level")}
    marks = {0: 400, 1: 0, 2: 0, 3: 0, 4: 0, 5: 400}
    pngs = {i: _png(a) for i, (a, _) in images.items()}
    rendered = pd.DataFrame([{"item_id": f"it{i}", "sha256": hashlib.sha256(pngs[i]).hexdigest(),
                              "width": a.shape[1], "height": a.shape[0], "mark_pixels": marks[i],
                              "phash": f"{i:016x}"} for i, (a, _) in images.items()])
    shipped = dict(pngs)
    shipped[5] = _png(np.full((128, 128, 3), 91, np.uint8))  # the planted bad payload: not what was rendered
    rows = [{"image": {"bytes": shipped[i], "path": f"{i}.png"}, "index": i, "item_id": f"it{i}", "dataset_id": "d",
             "perceptual_granularity": g, "split": "test"} for i, (_, g) in images.items()]
    (tmp_path / "data").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "data" / "test-00000-of-00001.parquet")
    (tmp_path / "tsv").mkdir()
    tsv_index = [*images, 99]
    pd.DataFrame({"index": tsv_index, "image": [base64.b64encode(pngs[i if i in pngs else 0]).decode() for i in tsv_index],
                  "perceptual granularity": [images[i][1] if i in images else "Box level" for i in tsv_index]}).to_csv(
        tmp_path / "tsv" / "medbench_TEST.tsv", sep="\t", index=False)
    report = verify_exports(tmp_path, rendered, cfg)
    assert report["images"] == 13
    assert report["problems"] == {"image_too_small": 2, "image_too_elongated": 2, "mark_not_visible": 2,
                                  "image_too_large": 2, "payload_differs_from_render": 1, "not_rendered": 1}
    assert "data/test-00000-of-00001.parquet index 5: payload_differs_from_render" in report["examples"]
    from pipelines.export.verify import exported_payloads, parquet_payloads
    assert verify_exports(tmp_path, rendered, cfg, payloads=exported_payloads(tmp_path, workers=2)) == report
    # the Parquet shards read back beforehand (as the export does while its TSVs are written): the same payloads,
    # the planted one among them, and only the TSVs read again
    early = parquet_payloads(tmp_path)
    assert list(early) == ["data/test-00000-of-00001.parquet"] and len(early["data/test-00000-of-00001.parquet"]) == len(images)
    assert exported_payloads(tmp_path, 2, early) == exported_payloads(tmp_path)
    assert verify_exports(tmp_path, rendered, cfg, payloads=exported_payloads(tmp_path, 1, early)) == report
    # rows longer than the TSV reader's block (here: every row) are read again with larger blocks, not lost
    from pipelines.export import verify
    monkeypatch.setattr(verify, "TSV_BLOCK_BYTES", 256)
    assert verify_exports(tmp_path, rendered, cfg) == report
    monkeypatch.undo()
    assert verify_exports(tmp_path, rendered, cfg, {"d": ["image_too_small"]})["problems"].get("image_too_small") is None
    fixed = rendered.assign(mark_pixels=[400, 0, 0, 4 * cfg.gates.min_mark_side, 0, 400])  # a mark just visible
    assert "mark_not_visible" not in verify_exports(tmp_path, fixed, cfg)["problems"]
    # the cross-split check uses the recorded pHash of the images whose payload is their rendered PNG
    rows[1]["split"] = "val"
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "data" / "test-00000-of-00001.parquet")
    twin = rendered.assign(phash=["00000000000000ff", "00000000000000fe", *rendered["phash"][2:]])
    leaks = cross_split_duplicates(tmp_path, twin, 4)
    assert leaks["images"] == 5 and leaks["pairs"] == 1  # it5 is left out: its payload is not its render


@pytest.mark.slow
@needs_shared
def test_shared_benchmark_exports_pass_every_gate(shared_build, shared_report):
    """The whole ../shared registry, built as a user would (the session's build, two describe workers): no
    exported image (decoded here from the Parquet and TSV files) is below the gates, PNGs follow the exported
    items, and thin-slab/28-px datasets say why they were dropped."""
    cfg = shared_build
    assert shared_report.failed == []
    out = cfg.data_root / "benchmark"
    bench = pd.read_parquet(out / "data")
    g = cfg.gates
    for png in bench["image"].map(lambda d: d["bytes"]):
        with Image.open(io.BytesIO(png)) as im:
            w, h = im.size
        assert min(w, h) >= g.min_image_side and max(w, h) <= g.max_aspect * min(w, h)
        assert max(w, h) <= cfg.display.max_image_side
    tsv = pd.read_csv(out / "tsv" / "medbench_TEST.tsv", sep="\t", usecols=["image"])
    for b64 in tsv["image"].head(300):
        with Image.open(io.BytesIO(base64.b64decode(b64))) as im:
            assert min(im.size) >= g.min_image_side
    items = len(pd.read_parquet(cfg.data_root / "tables" / "benchmark.parquet"))
    pngs = [p for p in cfg.data_root.rglob("*.png") if "benchmark" not in p.relative_to(cfg.data_root).parts]
    sheets = list((cfg.data_root / "review").glob("*.png"))
    assert len(pngs) <= 1.2 * items + len(sheets)
    drops = pd.read_parquet(cfg.data_root / "tables" / "gate_drops.parquet").set_index(["dataset_id", "rule"])
    assert drops.loc[("pneumoniamnist_csv", "image_too_small"), "dropped"] == \
        drops.loc[("pneumoniamnist_csv", "image_too_small"), "units"] > 0  # 28x28 X-rays
    assert drops.loc[("totalseg_ct_dicom", "image_too_small"), "dropped"] > 0  # 20-slice coronal/sagittal strips
    from pipelines.sources.registry import load_registry
    from pipelines.summary import summarize
    text = summarize(cfg.data_root, load_registry(cfg.registry).ids).render()
    assert "pneumoniamnist_csv: all 624 candidate units fail the readability gates" in text
