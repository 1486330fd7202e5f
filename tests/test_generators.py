"""The geometric question generators on synthetic planes whose answers are known by construction, and the
pieces they share (bins, directions, key balancing, scale options, perturbations, mirror pairs)."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from pipelines.select.units import balanced_caps
from pipelines.select.variants import consistency_pairs
from pipelines.config import PipelineConfig
from pipelines.ids import derived_rng
from pipelines.candidates.assemble import assign_letters
from pipelines.candidates.generators.bins import bin_of, window
from pipelines.candidates.generators.phrasing import options
from pipelines.candidates.generators.position import direction_names
from pipelines.candidates.generators.run import generated
from pipelines.render.perturb import perturb
from pipelines.standardize.regions import rle_counts

VOCAB_COLUMNS = ["dataset_id", "raw_label", "canonical_label", "status", "laterality", "department", "semantic_type"]


def test_bins_refuse_values_near_an_edge():
    ladder = [10, 20, 40]
    assert bin_of(15, ladder, 0.08) == 0 and bin_of(30, ladder, 0.08) == 1
    assert bin_of(19.5, ladder, 0.08) is None and bin_of(20.5, ladder, 0.08) is None  # rounding would decide
    assert bin_of(50, ladder, 0.08) is None


def test_option_window_puts_the_key_at_a_uniform_rank():
    ranks = Counter()
    for i in range(4000):
        w = window(np.random.default_rng(i), 6, 12, 4)
        assert w[0] == 6 and sorted(w) == list(range(min(w), min(w) + 4))
        ranks[sorted(w).index(6)] += 1
    assert all(abs(n / 4000 - 0.25) < 0.03 for n in ranks.values()) and len(ranks) == 4


def test_direction_words_follow_the_display_convention():
    names, frame = direction_names("LPS", "axial")  # radiological: image right = patient's left, up = anterior
    assert frame == "patient" and names[0] == "Patient's left" and names[2] == "Anterior"
    assert names[1] == "Anterior and patient's left"
    names, frame = direction_names("LPS", "sagittal")  # columns anterior -> posterior, head up
    assert names[0] == "Posterior" and names[2] == "Superior"
    names, frame = direction_names(None, None)
    assert frame == "image" and names[0] == "To the right" and names[6] == "Below"


def test_balanced_caps_equalize_keys_of_one_question():
    group = np.array([0, 0, 0, 1, 1, 2, 2, 3])
    sizes = {0: 12, 1: 9, 2: 3, 3: 40}
    balance = np.array(["count:rib"] * 7 + [None], dtype=object)
    caps = balanced_caps(group, sizes, balance, cap=30, floor=5)
    assert caps == {0: 9, 1: 9, 2: 0, 3: 30}  # group 2 is below the floor; 0 and 1 keep as many as the rarer


def test_scale_options_stay_in_ascending_order():
    units = [{"unit_id": f"u{i}", "multi": False, "scale": True, "options": [str(k), *map(str, others)]}
             for i, (k, others) in enumerate([(3, [1, 2, 4]), (1, [2, 3, 4]), (4, [1, 2, 3])])]
    assign_letters(units, seed=1)
    assert [u["ordered"] for u in units] == [["1", "2", "3", "4"]] * 3
    assert [u["answer"] for u in units] == ["C", "A", "D"]


def test_direction_options_have_no_order_that_points_at_the_key():
    names, _ = direction_names("LPS", "axial")
    firsts = Counter()
    for i in range(200):
        opts = options({"generator": "relative_position", "sector": 0, "directions": names}, [names[0]],
                       np.random.default_rng(i), PipelineConfig().generators)
        assert opts[0] == names[0] and set(opts) == {names[0], names[2], names[4], names[6]}
        firsts[opts[1]] += 1
    assert len(firsts) == 3


def _plane(shapes: dict[str, tuple[int, int, int, int]], size=(120, 100)) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """One axial LPS plane (1 x 2 mm pixels) with a rectangle per raw label: (slices, regions, stored masks)."""
    h, w = size
    plane = np.zeros((h, w), np.int32)
    for value, (x0, y0, x1, y1) in enumerate(shapes.values(), start=1):
        plane[y0:y1, x0:x1] = value
    ids = np.arange(1, len(shapes) + 1)
    rles = dict(zip(shapes, rle_counts(plane, ids)))
    slices = pd.DataFrame([{"image_id": "img", "sample_id": "s", "axis": "axial", "index": 5, "orientation": "LPS",
                            "spacing": [1.0, 2.0], "width": w, "height": h, "display_width": w,
                            "display_height": 2 * h, "contrast": 50.0,
                            "intensity_params": json.dumps({"window": "soft_tissue"})}])
    regions = pd.DataFrame([{"region_id": f"r-{lab}", "image_id": "img", "kind": "mask", "raw_label": lab,
                             "labels": [lab], "component_index": 1, "area_px": (x1 - x0) * (y1 - y0),
                             "bbox": [x0, y0, x1, y1], "centroid": [(x0 + x1) / 2, (y0 + y1) / 2],
                             "width": w, "height": h} for lab, (x0, y0, x1, y1) in shapes.items()])
    return slices, regions, {f"r-{lab}": rle for lab, rle in rles.items()}


def _vocab(labels: list[str]) -> pd.DataFrame:
    return pd.DataFrame([{"dataset_id": "d", "raw_label": lab, "canonical_label": lab.split("_")[0], "status": "mesh",
                          "laterality": None, "department": "Urology", "semantic_type": "organ"} for lab in labels],
                        columns=VOCAB_COLUMNS)


@pytest.fixture()
def synthetic():
    shapes = {"kidney_right": (10, 40, 30, 80), "kidney_left": (60, 45, 70, 55), "liver": (55, 5, 75, 20)}
    slices, regions, rles = _plane(shapes)
    runs = []
    for seed in range(12):  # each seed makes one unit per generator on the plane: several seeds cover the modes
        cfg = PipelineConfig(seed=seed)
        runs.append(generated(regions, slices, pd.DataFrame({"sample_id": ["s"], "dim": [3]}), _vocab(list(shapes)),
                              frozenset(shapes), cfg, Counter(), lambda ids: {i: rles[i] for i in ids}))
    rows = pd.concat(runs, ignore_index=True)
    rows["params"] = rows["generator_params"].map(json.loads)
    return shapes, rows


def test_size_and_measurement_keys_on_known_rectangles(synthetic):
    shapes, rows = synthetic
    mm2 = {lab: (x1 - x0) * (y1 - y0) * 2.0 for lab, (x0, y0, x1, y1) in shapes.items()}  # 1 x 2 mm pixels
    size = rows[rows["generator"] == "size_compare"]
    assert set(size["params"].map(lambda p: p["mode"])) == {"largest", "smallest"}
    for r in size.itertuples():
        areas = {m["colour"].capitalize(): mm2[m["raw_label"]] for m in r.params["marks"]}
        pick = max if r.params["mode"] == "largest" else min
        assert r.answers == [pick(areas, key=areas.get)]
    for r in rows[rows["generator"] == "size_ratio"].itertuples():
        a, b = (mm2[m["raw_label"]] for m in r.params["marks"])
        assert r.params["ratio"] == pytest.approx(a / b) and a > b
    assert len(rows[rows["generator"] == "measurement"])
    for r in rows[rows["generator"] == "measurement"].itertuples():
        x0, y0, x1, y1 = shapes[r.params["marks"][0]["raw_label"]]
        truth = np.hypot(x1 - x0, 2.0 * (y1 - y0)) if r.params["quantity"] == "diameter" else (x1 - x0) * (y1 - y0) * 0.02
        assert r.params["value"] == pytest.approx(truth, rel=1e-4)


def test_position_and_laterality_keys_on_known_rectangles(synthetic):
    shapes, rows = synthetic
    pos = rows[rows["generator"] == "relative_position"]
    assert len(pos)
    centre = {lab: ((x0 + x1) / 2, (y0 + y1) / 2 * 2.0) for lab, (x0, y0, x1, y1) in shapes.items()}
    for r in pos.itertuples():
        a, b = (centre[m["raw_label"]] for m in r.params["marks"])
        key = r.answers[0].lower()
        assert ("patient's left" in key) == (a[0] - b[0] > abs(a[1] - b[1]) * np.tan(np.radians(22.5)))
        assert ("anterior" in key) == (b[1] - a[1] > abs(a[0] - b[0]) * np.tan(np.radians(22.5)))
    lat = rows[rows["generator"] == "laterality"]
    assert set(lat["answers"].map(tuple)) <= {("Left",), ("Right",)} and len(lat)
    for r in lat.itertuples():
        assert r.answers[0].lower() in r.params["marks"][0]["raw_label"]


def test_instance_counts_see_separate_pieces():
    """Two pieces of one raw label on the plane are two cross-sections; one piece drawn by two raw labels that
    touch is one (the reader sees one blob)."""
    plane = np.zeros((80, 80), np.int32)
    plane[5:20, 5:20] = 1
    plane[40:60, 40:60] = 1  # rib_left_1 crosses the plane twice
    plane[5:25, 50:60] = 2
    plane[25:35, 50:60] = 3  # two touching labels, one blob
    rles = dict(zip(["a", "b", "c"], rle_counts(plane, np.array([1, 2, 3]))))
    slices = pd.DataFrame([{"image_id": f"img{i}", "sample_id": "s", "axis": "axial", "index": i, "orientation": "LPS",
                            "spacing": [1.0, 1.0], "width": 80, "height": 80, "display_width": 80,
                            "display_height": 80, "contrast": 50.0, "intensity_params": "{}"} for i in range(4)])
    bbox = {"a": [5, 5, 60, 60], "b": [50, 5, 60, 25], "c": [50, 25, 60, 35]}
    labels = {"a": "rib_left_1", "b": "vertebra_a", "c": "vertebra_b"}
    regions = pd.DataFrame([{"region_id": f"{i}-{k}", "image_id": f"img{i}", "kind": "mask", "raw_label": labels[k],
                             "labels": [labels[k]], "component_index": 1, "area_px": int((plane == v).sum()),
                             "bbox": bbox[k], "centroid": [30.0, 30.0], "width": 80, "height": 80}
                            for i in (0, 3) for v, k in ((1, "a"), (2, "b"), (3, "c"))])
    vocab = _vocab(list(labels.values()))
    vocab["canonical_label"] = ["rib", "vertebra", "vertebra"]
    cfg = PipelineConfig()
    cfg = cfg.model_copy(update={"questions": cfg.questions.model_copy(update={"min_count_keys": 2})})
    rows = generated(regions, slices, pd.DataFrame({"sample_id": ["s"], "dim": [3]}), vocab,
                     frozenset(labels.values()), cfg, Counter(), lambda ids: {i: rles[i.split("-")[1]] for i in ids})
    counts = rows[rows["generator"] == "instance_count"]
    got = {(r.image_id, r.count_label): r.count for r in counts.itertuples()}
    assert got[("img0", "rib")] == 2 and got[("img0", "vertebra")] == 1
    assert got[("img1", "rib")] == 0 and got[("img2", "vertebra")] == 0  # inside the extent, not drawn
    # the plane facts spread over two processes (one run of planes each) give the same rows
    spread = cfg.model_copy(update={"generators": cfg.generators.model_copy(update={"workers": 2})})
    rows2 = generated(regions, slices, pd.DataFrame({"sample_id": ["s"], "dim": [3]}), vocab,
                      frozenset(labels.values()), spread, Counter(), lambda ids: {i: rles[i.split("-")[1]] for i in ids})
    pd.testing.assert_frame_equal(rows2, rows)


def _blob_regions(rng, h: int, w: int, instances: int, most_blobs: int, largest: int):
    """(slices, regions, stored masks) of one plane holding ``instances`` instances, each of 1 to most_blobs - 1
    random rectangles of 1 to largest - 1 pixels a side (separate, touching or overlapping; lines one pixel wide
    too), described as describe does (boxes and RLEs)."""
    from pipelines.standardize.regions import describe_stack
    inst = np.zeros((h, w), np.int32)
    for k in range(1, instances + 1):
        for _ in range(int(rng.integers(1, most_blobs))):
            y, x = int(rng.integers(0, h - 4)), int(rng.integers(0, w - 4))
            inst[y:y + int(rng.integers(1, largest)), x:x + int(rng.integers(1, largest))] = k
    d = describe_stack(inst[None])
    slices, _, _ = _plane({"a": (1, 1, 2, 2)}, size=(h, w))
    regions = pd.DataFrame([{"region_id": f"r{i}", "image_id": "img", "kind": "mask", "raw_label": f"lab{i}",
                             "bbox": list(b), "width": w, "height": h}
                            for i, b in zip(d.ids.tolist(), d.bbox.tolist())])
    return slices, regions, {f"r{i}": r for i, r in zip(d.ids.tolist(), d.rle)}


def test_pieces_read_in_the_recorded_box_equal_those_of_the_whole_plane():
    """plane_facts labels a region's pieces inside the box describe recorded for it: the facts equal those found
    without boxes (each mask's box searched over the plane), and each count equals scipy's 8-connected
    components of the decoded mask (an instance that crosses the plane two or three times)."""
    from scipy import ndimage

    from pipelines.candidates.generators.pieces import plane_facts
    from pipelines.candidates.generators.structures import plane_frame
    from pipelines.standardize.regions import decode_rle
    h, w = 90, 70
    slices, regions, rle = _blob_regions(np.random.default_rng(9), h, w, 8, 4, 8)  # one to three blobs each
    args = (plane_frame(slices), rle, {}, frozenset(), {"img"}, PipelineConfig())
    boxed, whole = plane_facts(regions, *args), plane_facts(regions.drop(columns="bbox"), *args)
    assert boxed == whole and len(boxed.pieces) == len(regions)
    for rid, n in boxed.pieces.items():
        mask = decode_rle(rle[rid], h, w)
        assert n == ndimage.label(mask, structure=np.ones((3, 3)))[1]
    assert sorted(set(boxed.pieces.values())) != [1]  # some instance really shows several pieces


@pytest.mark.parametrize("seed", range(12))
def test_counts_joined_in_the_recorded_boxes_equal_those_of_the_whole_plane(seed):
    """A counted structure is the union of its raw labels' masks; plane_facts joins them inside the box around
    their recorded boxes. Its counts (cross-sections, too small, crowded) equal those found without boxes, and
    the pieces and the crowding equal SciPy's on the union joined over the whole plane."""
    from scipy import ndimage

    from pipelines.candidates.generators.pieces import count_gap, plane_facts
    from pipelines.candidates.generators.structures import plane_frame
    from pipelines.standardize.regions import decode_rle
    rng = np.random.default_rng(100 + seed)
    h, w = int(rng.integers(40, 100)), int(rng.integers(40, 100))
    slices, regions, rle = _blob_regions(rng, h, w, 9, 3, 12)
    canonical = {raw: f"organ{int(raw[3:]) % 3}" for raw in regions["raw_label"]}  # three structures of several labels
    args = (plane_frame(slices), rle, canonical, frozenset(canonical), {"img"}, PipelineConfig())
    boxed, whole = plane_facts(regions, *args), plane_facts(regions.drop(columns="bbox"), *args)
    assert boxed == whole and len(boxed.counts) == len({canonical[r] for r in regions["raw_label"]})
    p = plane_frame(slices).iloc[0]  # 1 x 2 mm pixels: shown twice as tall as stored
    assert (p["display_width"], p["display_height"], p["scale"], p["scale_y"]) == (w, 2 * h, 1.0, 2.0)
    gap = count_gap(w, 2 * h, PipelineConfig().questions)
    eight = np.ones((3, 3))
    for (_, canon), (n, _, rids, close) in boxed.counts.items():
        union = np.zeros((h, w), bool)
        for rid in rids:
            union |= decode_rle(rle[rid], h, w)
        assert n == ndimage.label(union, structure=eight)[1]
        assert close == _crowded_by_hand(union, gap, gap / 2)


def test_perturbations_are_seeded_and_grow_with_severity():
    img = np.full((128, 128, 3), 40, np.uint8)
    img[31:97, 33:94] = 200
    img[61:66, :] = 120
    for kind in ("gaussian_noise", "gaussian_blur", "contrast", "downsample"):
        outs = [perturb(img, kind, s, derived_rng(1, kind))[0] for s in (1, 2, 3)]
        again = perturb(img, kind, 2, derived_rng(1, kind))[0]
        assert np.array_equal(outs[1], again) and all(o.shape == img.shape for o in outs)
        change = [np.abs(o.astype(int) - img).mean() for o in outs]
        assert change[0] > 0 and change[0] <= change[1] <= change[2], (kind, change)


def test_perturbations_equal_the_plain_per_pixel_formulas():
    """Each kind re-derived the plain way, per pixel in float32 (as the rule reads): contrast pulls every pixel
    toward its channel's mean, noise adds one seeded Gaussian field scaled by the 0.5-99.5th percentile range,
    blur and downsample are OpenCV's on the float image; then rounded half to even and clipped. The code takes
    shortcuts (contrast as a per-level table); the bytes must not change. Colour and grey, odd sizes."""
    import cv2

    def reference(rgb, kind, severity, rng):
        img = rgb.astype(np.float32)
        h, w = rgb.shape[:2]
        if kind == "contrast":
            mean = img.mean(axis=(0, 1), keepdims=True)
            out = mean + (img - mean) * (0.7, 0.5, 0.3)[severity - 1]
        elif kind == "gaussian_noise":
            lo, hi = np.percentile(img, [0.5, 99.5])
            sigma = (0.03, 0.06, 0.12)[severity - 1] * max(float(hi - lo), 1.0)
            out = img + rng.normal(0.0, sigma, size=(h, w, 1)).astype(np.float32)
        elif kind == "gaussian_blur":
            sigma = (0.004, 0.008, 0.016)[severity - 1] * min(h, w)
            out = cv2.GaussianBlur(img, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
        else:
            f = (2.0, 3.0, 4.0)[severity - 1]
            small = cv2.resize(img, (max(1, int(round(w / f))), max(1, int(round(h / f)))),
                               interpolation=cv2.INTER_AREA)
            out = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)

    rng = np.random.default_rng(11)
    for case in range(24):
        h, w = int(rng.integers(3, 140)), int(rng.integers(3, 140))
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        if case % 2:  # a grey slice, as CT planes are shown
            rgb = np.repeat(np.clip(rng.normal(90, 40, (h, w, 1)), 0, 255).astype(np.uint8), 3, axis=2)
        for kind in ("contrast", "gaussian_noise", "gaussian_blur", "downsample"):
            for severity in (1, 2, 3):
                got = perturb(rgb, kind, severity, derived_rng(case, kind))[0]
                want = reference(rgb, kind, severity, derived_rng(case, kind))
                assert got.dtype == np.uint8 and np.array_equal(got, want), (case, kind, severity)


def test_mirrored_consistency_copy_says_so_and_keeps_the_key():
    stem = ("On which side of the patient's body does the structure outlined in red lie in this CT image? "
            "The image is displayed with the patient's right on the viewer's left.")
    base = pd.DataFrame([{"item_id": "i1", "unit_id": "u1", "prompt_id": "p1", "generator": "laterality",
                          "variant_of": None, "subset": "main", "A": "Right", "B": "Left", "C": None, "D": None,
                          "E": None, "answer": "B", "answer_label": "patient's left", "question": stem,
                          "generator_params": json.dumps({"side": "left", "mirrored": False,
                                                          "viewer_left_is": "patient's right"})}])
    pairs = consistency_pairs(base)
    same, m = pairs.iloc[0], pairs.iloc[1]
    assert same["question"] == stem and json.loads(same["variant"]) == {"kind": "as_shown"}
    assert m["answer"] == "B" and m["answer_label"] == "patient's left" and m["variant_of"] == "i1"
    assert m["question"].endswith("This image has been mirrored left to right, so the patient's left is on the "
                                  "viewer's left.")
    assert json.loads(m["generator_params"]) == {"side": "left", "mirrored": True, "viewer_left_is": "patient's left"}
    assert len({"i1", same["item_id"], m["item_id"]}) == 3 and set(pairs["subset"]) == {"consistency"}

def test_perturbation_severity_is_relative_to_the_image():
    """Blur scales with the shorter side and noise with the grey range (hand-computed: 0.4 % of 100 px = 0.4 px,
    of 1,000 px = 4 px; 6 % of a 50..150 grey range = 6 grey levels), so a mild level is mild at any size."""
    small = np.full((100, 160, 3), 50, np.uint8)
    small[:, 80:] = 150
    big = np.full((1000, 1600, 3), 50, np.uint8)
    big[:, 800:] = 150
    assert perturb(small, "gaussian_blur", 1, derived_rng(1, "b"))[1]["sigma_px"] == 0.4
    assert perturb(big, "gaussian_blur", 1, derived_rng(1, "b"))[1]["sigma_px"] == 4.0
    assert perturb(small, "gaussian_noise", 2, derived_rng(1, "n"))[1]["sigma_grey"] == 6.0
    # the edge is softened over the same share of the image at both sizes
    a = perturb(small, "gaussian_blur", 3, derived_rng(1, "b"))[0][50, :, 0].astype(float)
    b = perturb(big, "gaussian_blur", 3, derived_rng(1, "b"))[0][500, :, 0].reshape(160, 10).mean(axis=1)
    assert np.abs(a - b).max() <= 6


def test_counts_only_when_every_piece_stands_apart():
    """Two squares 2 px apart are one blob to a reader at a 3 px gap; 10 px apart they are two; a piece cut by the
    border hides how much of it (or how many) lie outside."""
    from pipelines.candidates.generators.pieces import crowded
    m = np.zeros((50, 50), bool)
    m[20:25, 10:15] = True
    m[20:25, 17:22] = True  # columns 15 and 16 between them: 2 px of background
    assert crowded(m, 3, 3)
    m[20:25, 17:22] = False
    m[20:25, 25:30] = True  # 10 px apart
    assert not crowded(m, 3, 3)
    m[0:4, 40:45] = True  # touches the top edge
    assert crowded(m, 3, 3)


def test_box_counts_skip_crowded_fields(demo_config):
    from pipelines.candidates.rows import _crowded_boxes
    sl = pd.DataFrame({"image_id": ["a", "b"], "width": [100, 100], "height": [100, 100],
                       "display_width": [100, 100], "display_height": [100, 100]})
    boxes = pd.DataFrame({"image_id": ["a", "a", "b", "b"], "raw_label": ["wbc"] * 4,
                          "bbox": [[10, 10, 20, 20], [21, 10, 30, 20],  # 1 px apart: one blob to a reader
                                   [10, 10, 20, 20], [40, 40, 50, 50]]})
    assert _crowded_boxes(boxes, sl, demo_config) == {("a", "wbc")}


def test_nearby_labels_are_the_labels_within_the_slab_of_each_plane():
    """Every plane's nearby labels, re-derived by brute force: the union of the canonical labels marked on the
    planes of the same scan and axis whose index lies within slab x depth of its own (at least one plane)."""
    from pipelines.candidates.rows import DatasetRows, nearby_labels
    rng = np.random.default_rng(7)
    planes, regions = [], []
    for sample, axis, depth in (("s1", "axial", 120), ("s1", "coronal", 300), ("s2", "axial", 40)):
        for k in range(int(rng.integers(30, 60))):
            index = int(rng.integers(0, depth))  # repeats: one index under two windows
            image_id = f"{sample}-{axis}-{k}"
            planes.append({"image_id": image_id, "sample_id": sample, "axis": axis, "index": index, "depth": depth})
            for raw in rng.choice(["liver", "kidney_l", "aorta", "lung", "unmapped"], int(rng.integers(0, 3)),
                                  replace=False):
                regions.append({"image_id": image_id, "raw_label": str(raw), "kind": "mask"})
            regions.append({"image_id": image_id, "raw_label": "background", "kind": "image"})
    sl, reg = pd.DataFrame(planes), pd.DataFrame(regions)
    canonical = {"liver": "Liver", "kidney_l": "Kidney", "aorta": "Aorta", "lung": "Lung"}
    ds = DatasetRows("d", "CT", "segmentation", sl, reg, pd.DataFrame({"sample_id": ["s1", "s2"], "dim": [3, 3]}))
    for slab in (0.02, 0.1, 0.4):
        got = nearby_labels(ds, sl, canonical, slab)
        for p in planes:
            reach = max(1.0, slab * p["depth"])
            near = {q["image_id"] for q in planes if (q["sample_id"], q["axis"]) == (p["sample_id"], p["axis"])
                    and abs(q["index"] - p["index"]) <= reach}
            want = {canonical[r["raw_label"]] for r in regions if r["image_id"] in near and r["kind"] != "image"
                    and r["raw_label"] in canonical}
            assert got[p["image_id"]] == want, (slab, p)


@pytest.mark.parametrize("seed", range(5))
def test_piece_areas_whatever_the_masks_memory_order(seed):
    """_components gives the areas of the 8-connected pieces (scipy's labelling, counted by hand below) for a mask
    in C or Fortran order (a decoded RLE is column-major), bool or 0/1, the same list for each."""
    from scipy import ndimage

    from pipelines.candidates.generators.pieces import _components
    rng = np.random.default_rng(seed)
    mask = rng.random((37, 53)) < 0.08
    mask[5:9, 40:44] = True
    labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
    want = sorted(int((labels == k).sum()) for k in range(1, n + 1))
    got = [_components(m).tolist() for m in (mask, np.asfortranarray(mask), mask.astype(np.uint8),
                                              np.asfortranarray(mask.astype(np.uint8)))]
    assert sorted(got[0]) == want and got[1] == got[2] == got[3] == got[0]
    assert _components(np.zeros((4, 4), bool)).tolist() == []


def _crowded_by_hand(mask: np.ndarray, gap_x: float, gap_y: float) -> bool:
    """The crowding rule re-derived on the whole plane with SciPy: a piece within the gap of a border, or fewer
    pieces once every piece is grown by half the gap (a rectangle of 2 * ceil(gap / 2) + 1 pixels per axis)."""
    from scipy import ndimage
    bx, by = int(np.ceil(gap_x)), int(np.ceil(gap_y))
    rows, cols = np.nonzero(mask)
    h, w = mask.shape
    if len(rows) and (rows.min() < by or rows.max() >= h - by or cols.min() < bx or cols.max() >= w - bx):
        return True
    eight = np.ones((3, 3))
    n = ndimage.label(mask, structure=eight)[1]
    if n < 2:
        return False
    rx, ry = int(np.ceil(gap_x / 2)), int(np.ceil(gap_y / 2))
    grown = ndimage.binary_dilation(mask, structure=np.ones((2 * ry + 1, 2 * rx + 1), bool))
    return ndimage.label(grown, structure=eight)[1] < n


@pytest.mark.parametrize("seed", range(40))
def test_crowded_pieces_agree_with_the_whole_plane_rule(seed):
    """`crowded` looks only around the mask's bounding box; on random blobs (near borders, touching, apart, in C
    or Fortran order) it says what growing the whole plane says."""
    from pipelines.candidates.generators.pieces import crowded
    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(20, 80)), int(rng.integers(20, 80))
    mask = np.zeros((h, w), bool)
    for _ in range(int(rng.integers(0, 5))):
        y, x = int(rng.integers(0, h)), int(rng.integers(0, w))
        mask[y:y + int(rng.integers(1, 8)), x:x + int(rng.integers(1, 8))] = True
    gap_x, gap_y = float(rng.uniform(0, 9)), float(rng.uniform(0, 9))
    want = _crowded_by_hand(mask, gap_x, gap_y)
    assert crowded(mask, gap_x, gap_y) == want
    assert crowded(np.asfortranarray(mask), gap_x, gap_y) == want


def test_crowded_cases_by_construction():
    from pipelines.candidates.generators.pieces import crowded
    plane = np.zeros((60, 60), bool)
    apart, close = plane.copy(), plane.copy()
    apart[20:25, 10:15] = apart[20:25, 40:45] = True  # 25 px of background between them
    close[20:25, 20:25] = close[20:25, 28:33] = True  # 3 px between them
    assert not crowded(apart, 6, 6) and crowded(close, 6, 6) and not crowded(close, 2, 2)
    edge = plane.copy()
    edge[2:6, 30:34] = True  # one piece, 2 px from the top
    assert crowded(edge, 3, 3) and not crowded(edge, 2, 2)
    assert not crowded(plane, 5, 5)
