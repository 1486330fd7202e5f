"""Answer keys, splits and leakage components against values worked out by hand or against properties that hold
whatever the seed: the tests that let the mutation run (docs/mutation.md) kill what the broader tests let through.
Nothing here reads an expected value back from the code under test."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from pipelines.validity.leakage import cross_split_near_duplicates, leak_components, withhold_marked_leaks
from pipelines.select.splits import assign_splits, reletter
from pipelines.config import GeneratorSettings
from pipelines.candidates.generators import laterality, position, size
from pipelines.candidates.generators.bins import bin_of, bin_text, fmt, log_distance, window

# --- bins ------------------------------------------------------------------------------------------------------


def test_bin_edges_by_hand():
    # ladder [10, 40], margin 0.5: a value is asked when 10 * 1.5 = 15 <= v <= 40 / 1.5 = 26.67
    assert bin_of(15, [10, 40], 0.5) == 0 and bin_of(26, [10, 40], 0.5) == 0
    assert bin_of(14.9, [10, 40], 0.5) is None and bin_of(27, [10, 40], 0.5) is None
    assert bin_of(10, [10, 20, 40], 0.0) == 0 and bin_of(20, [10, 20, 40], 0.0) == 1  # lower edge inclusive
    assert bin_of(40, [10, 20, 40], 0.0) is None and bin_of(9.99, [10, 20, 40], 0.0) is None
    assert bin_of(5, [1], 0.0) is None


def test_bin_text_by_hand():
    assert bin_text(0, [1, 2.5, 4], "mm") == "1–2.5 mm"
    assert bin_text(1, [1, 2.5, 4], "") == "2.5–4"  # no unit: no trailing space
    assert bin_text(1, [0.125, 0.25, 0.5], "cm²") == "0.25–0.5 cm²"
    assert fmt(3.0) == "3" and fmt(0.125) == "0.125"
    assert math.isclose(log_distance(2, 8), math.log(4)) and math.isclose(log_distance(8, 2), math.log(4))


@pytest.mark.parametrize("key,n_bins,size,windows", [
    (0, 12, 4, {(0, 1, 2, 3)}),  # the first bin can only lead
    (11, 12, 4, {(11, 8, 9, 10)}),  # the last can only close
    (1, 12, 4, {(1, 2, 3, 4), (1, 0, 2, 3)}),
    (2, 3, 3, {(2, 0, 1)}),
    (1, 3, 3, {(1, 0, 2)}),
])
def test_option_windows_by_hand(key, n_bins, size, windows):
    got = {tuple(window(np.random.default_rng(s), key, n_bins, size)) for s in range(60)}
    assert got == windows


# --- direction words and relative position ------------------------------------------------------------------------

def test_all_eight_direction_names_by_hand():
    names, frame = position.direction_names("LPS", "axial")
    assert frame == "patient" and names == [
        "Patient's left", "Anterior and patient's left", "Anterior", "Anterior and patient's right",
        "Patient's right", "Posterior and patient's right", "Posterior", "Posterior and patient's left"]
    names, _ = position.direction_names("RAS", "coronal")  # columns toward R, rows toward I: up is superior
    assert names[0] == "Patient's right" and names[2] == "Superior" and names[5] == "Inferior and patient's left"
    names, frame = position.direction_names(None, None)
    assert frame == "image" and names == ["To the right", "Above and to the right", "Above", "Above and to the left",
                                          "To the left", "Below and to the left", "Below", "Below and to the right"]
    assert position.direction_names("LPS", "oblique")[1] == "image"


def _box(name: str, cx: float, cy: float, half: float = 5.0, **extra) -> dict:
    return {"region_id": name, "raw_label": name, "image_id": "img", "x0": cx - half, "x1": cx + half,
            "y0": cy - half, "y1": cy + half, "cx": cx, "cy": cy, "scale": 1.0, "scale_y": 1.0,
            "display_width": 100.0, "display_height": 100.0, "orientation": "LPS", "axis": "axial",
            "department": "d", "semantic_type": "s", **extra}


@pytest.mark.parametrize("a_at,b_at,key_if_a_first,sector", [
    ((80, 50), (20, 50), "Patient's left", 0),  # a right of b on screen: toward L in LPS axial
    ((50, 20), (50, 80), "Anterior", 2),  # a above b: rows grow toward P, so up is anterior
    ((80, 20), (20, 80), "Anterior and patient's left", 1),
])
def test_relative_position_key_by_hand(a_at, b_at, key_if_a_first, sector):
    rows = [_box("A", *a_at), _box("B", *b_at)]
    g = GeneratorSettings()
    seen = set()
    for seed in range(8):
        (spec,) = position.plane_specs(rows, np.random.default_rng(seed), g)
        first = spec.marks[0]["region_id"]
        sec = sector if first == "A" else (sector + 4) % 8
        names = position.direction_names("LPS", "axial")[0]
        assert spec.answers == [names[sec]] and spec.answer_label == names[sec]
        if first == "A":
            assert spec.answers == [key_if_a_first]
        assert spec.params["sector"] == sec and spec.params["frame"] == "patient"
        assert spec.params["angle_deg"] == pytest.approx(sec * 45.0)
        assert spec.balance_group == f"position:patient:axial:{sec % 2}"
        assert len(spec.colours) == 2 and spec.colours[0] != spec.colours[1]
        assert set(spec.colours) <= set(g.palette) and spec.task == "Relative Position"
        seen.add(first)
    assert seen == {"A", "B"}


def test_relative_position_refuses_ambiguous_pairs():
    g = GeneratorSettings()
    rng = np.random.default_rng(0)
    assert position.plane_specs([_box("A", 50, 50), _box("B", 55, 52)], rng, g) == []  # boxes overlap
    # 30 degrees off the horizontal: 15 from the sector's centre, more than 22.5 - 10 = 12.5
    dx = 40.0
    far = [_box("A", 50, 50, 2), _box("B", 50 + dx, 50 - dx * math.tan(math.radians(30)), 2)]
    assert position.plane_specs(far, rng, g) == []
    # 10 degrees off: kept
    near = [_box("A", 50, 50, 2), _box("B", 50 + dx, 50 - dx * math.tan(math.radians(10)), 2)]
    assert len(position.plane_specs(near, rng, g)) == 1
    # apart but closer than 5 % of the diagonal (0.05 * 141.4 = 7.07 px)
    close = [_box("A", 50, 50, 1), _box("B", 56.5, 50, 1)]
    assert position.plane_specs(close, rng, g) == []
    anisotropic = [_box("A", 50, 50, 1, scale=2.0), _box("B", 53, 50, 1, scale=2.0)]  # 3 px stored = 6 shown
    assert position.plane_specs(anisotropic, rng, g) == []


def test_relative_position_in_image_frame_uses_screen_words():
    rows = [_box("A", 20, 50, orientation=None), _box("B", 80, 50, orientation=None)]
    (spec,) = position.plane_specs(rows, np.random.default_rng(1), GeneratorSettings())
    want = "To the left" if spec.marks[0]["region_id"] == "A" else "To the right"
    assert spec.answers == [want] and spec.params["frame"] == "image"
    assert spec.params["offset_display_px"] in ([-60.0, 0.0], [60.0, 0.0])
    assert spec.params["directions"][0] == "To the right"


# --- laterality ----------------------------------------------------------------------------------------------------

def test_laterality_spec_fields_and_per_plane_cap():
    rows = [{"side": s, "orientation": "LPS", "axis": "coronal", "image_id": "img", "department": "Uro",
             "semantic_type": "organ", "region_id": f"r{s}", "raw_label": f"kidney_{s}"} for s in ("left", "right")]
    rows.append(dict(rows[0], side="both", region_id="rb"))
    g = GeneratorSettings()
    specs = laterality.plane_specs(rows, np.random.default_rng(0), g)
    assert len(specs) == 1  # per_plane = 1
    many = laterality.plane_specs(rows, np.random.default_rng(0), g.model_copy(update={"per_plane": 5}))
    assert sorted(s.marks[0]["region_id"] for s in many) == ["rleft", "rright"]  # 'both' is not a side
    for s in many:
        side = s.marks[0]["side"]
        assert (s.generator, s.task, s.image_id, s.department, s.semantic_type) == (
            "laterality", "Laterality", "img", "Uro", "organ")
        assert s.answers == [side.capitalize()] and len(s.colours) == 1 and s.colours[0] in g.palette
        assert s.params["viewer_left_is"] == "patient's right"
    assert laterality.plane_specs([], np.random.default_rng(0), g) == []


# --- size ----------------------------------------------------------------------------------------------------------

def _area_row(name: str, mm2: float | None, px: float = 0.0) -> dict:
    return {"region_id": name, "raw_label": name, "canonical_label": f"c_{name}", "image_id": "img",
            "department": "d", "semantic_type": "s", "area_mm2": np.nan if mm2 is None else mm2, "area_px": px}


def _all_specs(rows, seeds=40, **update):
    g = GeneratorSettings().model_copy(update={"per_plane": 3, **update})
    return [s for seed in range(seeds) for s in size.plane_specs(rows, np.random.default_rng(seed), g)]


def test_size_keys_by_hand():
    """Areas 100 and 40 mm²: 100 >= 1.2 x 40 and 40 x 1.2 <= 100, so both 'largest' and 'smallest' are asked;
    the ratio 2.5 lies in the 2-3 bin, clear of both edges by more than 8 %."""
    rows = [_area_row("big", 100.0, 1.0), _area_row("small", 40.0, 999.0)]
    specs = _all_specs(rows)
    modes = Counter(s.params["mode"] for s in specs)
    assert set(modes) == {"largest", "smallest", "ratio"}
    for s in specs:
        colour_of = {m["region_id"]: c for m, c in zip(s.marks, s.colours)}
        if s.params["mode"] == "largest":
            assert s.answers == [colour_of["big"].capitalize()] and s.answer_label == "largest: c_big"
        elif s.params["mode"] == "smallest":
            assert s.answers == [colour_of["small"].capitalize()] and s.answer_label == "smallest: c_small"
        else:
            assert s.generator == "size_ratio" and s.answers == ["2–3 times"] and s.answer_label == "ratio 2–3 times"
            assert [m["region_id"] for m in s.marks] == ["big", "small"]  # the larger first
            assert s.params == {"mode": "ratio", "ratio": 2.5, "bin": 3, "areas": [100.0, 40.0], "area_unit": "mm2"}
        if s.params["mode"] != "ratio":
            assert s.generator == "size_compare" and s.params["area_unit"] == "mm2"
            assert sorted(s.params["areas"]) == [40.0, 100.0]
        assert s.task == "Size Comparison" and len(set(s.colours)) == len(s.colours)


def test_size_without_clear_margin_asks_only_the_ratio():
    rows = [_area_row("a", None, 100.0), _area_row("b", None, 90.0)]  # 100 < 1.2 x 90: no largest/smallest
    specs = _all_specs(rows)
    assert specs and {s.params["mode"] for s in specs} == {"ratio"}
    assert {s.answers[0] for s in specs} == {"1–1.25 times"}  # 1.111: clear of 1.08 and 1.157
    assert {s.params["area_unit"] for s in specs} == {"px"} and {s.params["ratio"] for s in specs} == {1.1111}


def test_size_three_structures_need_a_margin_on_their_own_end():
    rows = [_area_row("a", 100.0), _area_row("b", 50.0), _area_row("c", 45.0)]
    specs = [s for s in _all_specs(rows, seeds=80) if len(s.marks) == 3]
    assert specs and {s.params["mode"] for s in specs} == {"largest"}  # 50 < 1.2 x 45: no smallest
    for s in specs:
        assert s.answers == [dict(zip([m["region_id"] for m in s.marks], s.colours))["a"].capitalize()]
    assert size.plane_specs(rows[:1], np.random.default_rng(0), GeneratorSettings()) == []


def test_size_ratio_near_a_bin_edge_is_not_asked():
    rows = [_area_row("a", 100.0), _area_row("b", 49.0)]  # ratio 2.04: within 8 % of the 2.0 edge
    assert {s.params["mode"] for s in _all_specs(rows)} == {"largest", "smallest"}


def test_size_respects_per_plane():
    rows = [_area_row(n, a) for n, a in zip("abcd", (10.0, 30.0, 90.0, 270.0))]
    g = GeneratorSettings()
    assert all(len(size.plane_specs(rows, np.random.default_rng(s), g)) <= 1 for s in range(20))
    g3 = g.model_copy(update={"per_plane": 3})
    assert max(len(size.plane_specs(rows, np.random.default_rng(s), g3)) for s in range(20)) == 3


# --- leakage -------------------------------------------------------------------------------------------------------

def _marked(rows):
    return pd.DataFrame(rows, columns=["item_id", "split", "subset", "variant_of", "phash"])


@pytest.mark.parametrize("val_hash,test_hash", [("00000000000000f0", "00000000000000f1"),  # val hash sorts first
                                                ("00000000000000f1", "00000000000000f0")])  # ... or second
def test_a_val_image_near_a_test_image_is_withheld_whichever_hash_sorts_first(val_hash, test_hash):
    items = _marked([("v", "val", "main", None, val_hash), ("t", "test", "main", None, test_hash)])
    kept, withheld = withhold_marked_leaks(items, 4)
    assert withheld == ["v"] and kept["item_id"].tolist() == ["t"]


def test_near_duplicates_within_val_are_not_a_leak():
    items = _marked([("v1", "val", "main", None, "00000000000000f0"), ("v2", "val", "main", None, "00000000000000f1"),
                     ("t", "test", "main", None, "ffffffffffffff00")])
    assert withhold_marked_leaks(items, 4)[1] == []
    same = _marked([("v", "val", "main", None, "00000000000000f0"), ("t", "test", "main", None, "00000000000000f0")])
    assert withhold_marked_leaks(same, 0)[1] == ["v"]  # one hash only, shared across the splits


def test_cross_split_pairs_are_counted_by_hand():
    # hashes: h0 x2 in val + h0 x1 in test (2 cross pairs), h1 (1 bit from h0) in test: 2 more with the val h0s,
    # h9 far away in val: none
    phash = pd.Series(["0000000000000000", "0000000000000000", "0000000000000000", "0000000000000001",
                       "ffffffffffffffff"])
    split = pd.Series(["val", "val", "test", "test", "val"])
    n, examples = cross_split_near_duplicates(phash, split, 2)
    assert n == 4
    assert examples == [("0000000000000000", "0000000000000000"), ("0000000000000000", "0000000000000001")]
    assert cross_split_near_duplicates(phash, pd.Series(["val"] * 5), 2) == (0, [])


def test_components_chain_through_several_links():
    # g1 -sha- g2 -phash (2 bits)- g3; g4 on its own; g5 shares g4's sha only through an empty hash: no link
    rows = [("g3", "s3", "00000000000000f3"), ("g2", "s2", "00000000000000f0"), ("g1", "s2", "aaaaaaaaaaaaaaaa"),
            ("g4", "", "5555555555555555"), ("g5", "", "0f0f0f0f0f0f0f0f")]
    comp = leak_components(pd.DataFrame(rows, columns=["group_id", "sha256", "phash"]), bits=2)
    assert comp.tolist() == ["g1", "g1", "g1", "g4", "g5"]
    empty = leak_components(pd.DataFrame(columns=["group_id", "sha256", "phash"]), bits=2)
    assert empty.empty and empty.dtype == object


# --- splits --------------------------------------------------------------------------------------------------------

def _groups(spec: dict[str, list[int]], task: dict[str, str] | None = None) -> pd.DataFrame:
    """Items of the given datasets: spec maps dataset -> group sizes (group ids '<dataset>-<k>')."""
    rows = []
    for ds, sizes in spec.items():
        for k, n in enumerate(sizes):
            g = f"{ds}-{k}"
            rows += [{"dataset_id": ds, "group_id": g, "clinical_vqa_task": (task or {}).get(g, "T"),
                      "modality": "CT"} for _ in range(n)]
    return pd.DataFrame(rows)


def _val_groups(items, split) -> set[str]:
    return set(items.loc[split == "val", "group_id"])


@pytest.mark.parametrize("fraction,want", [(0.3, 3), (0.25, 3), (0.2, 2), (0.05, 1), (0.0, 1), (1.0, 9)])
def test_per_dataset_share_by_hand(fraction, want):
    """Ten single-item groups: groups go to val until the share reaches the fraction; one that overshoots by no more
    than half its size still goes (0.25: 2 + 0.5 = 2.5 is not above the 2.5 target), and two or more groups always
    leave one on each side."""
    items = _groups({"d": [1] * 10})
    for seed in range(10):
        split = assign_splits(items, fraction, seed)
        assert (split == "val").sum() == want
        assert split.index.equals(items.index) and set(split) <= {"val", "test"}


def test_lone_group_goes_to_val_only_within_half_its_size():
    # target 0.5 x 4 = 2: 0 + 4 / 2 = 2 is not above 2, so it goes; at 0.4 (target 1.6) it stays in test
    assert (assign_splits(_groups({"d": [4]}), 0.5, 0) == "val").all()
    assert (assign_splits(_groups({"d": [4]}), 0.4, 0) == "test").all()


def test_a_component_spanning_datasets_is_decided_by_the_first_dataset():
    items = pd.DataFrame([{"dataset_id": "a", "group_id": "shared"}] * 4 + [{"dataset_id": "b", "group_id": "shared"}]
                         + [{"dataset_id": "b", "group_id": f"b{k}"} for k in range(4)])
    for seed in range(10):
        split = assign_splits(items, 0.5, seed)
        assert split[items["group_id"] == "shared"].eq("val").all()  # dataset a alone: 0 + 2 <= 2
        assert (split[items["group_id"] != "shared"] == "test").any()  # b keeps a test group


def test_share_range_is_reached_and_never_passed_per_dataset():
    items = _groups({"a": [1, 2, 3, 4, 5, 6, 7, 8], "b": [2, 2, 2, 2, 2, 2, 2, 2, 2, 2]})
    n = len(items)
    for seed in range(12):
        split = assign_splits(items, 0.0, seed, share_range=(0.25, 0.35))
        share = (split == "val").mean()
        assert 0.25 <= share <= 0.35, (seed, share)
        per = items.assign(v=split == "val").groupby("dataset_id")["v"].mean()
        assert (per <= 0.35 + 1e-9).all()
        assert (items.assign(s=split).groupby("group_id")["s"].nunique() == 1).all()
    assert n == 56


def test_share_above_the_range_moves_the_largest_val_groups_back():
    items = _groups({"a": [1, 1, 1, 1, 1, 5]})
    for seed in range(12):
        split = assign_splits(items, 1.0, seed, share_range=(0.0, 0.5))
        assert (split == "val").mean() <= 0.5
        assert "a-5" not in _val_groups(items, split)  # the only group whose return is enough on its own


def test_coverage_moves_the_smallest_test_group_of_an_uncovered_task():
    """Dataset a has task X only in groups a-1 (2 items) and a-2 (3 items); with a fraction of 0 step 1 leaves one
    group of a in val. When X has none in val, the smaller X group (a-1) goes, keeping 3 of X's 5 items in test."""
    task = {"a-1": "X", "a-2": "X"}
    items = _groups({"a": [6, 2, 3]}, task)
    for seed in range(12):
        split = assign_splits(items, 0.0, seed, share_range=(0.0, 0.8), cover_min_items=3)
        x_val = _val_groups(items, split) & {"a-1", "a-2"}
        assert x_val and "a-2" not in x_val or x_val == {"a-2"}
        assert (split[items["clinical_vqa_task"] == "X"] == "test").sum() >= 2
    # too few items of X to ask for coverage: nothing moves beyond step 1
    for seed in range(12):
        split = assign_splits(items, 0.0, seed, cover_min_items=6)
        assert len(_val_groups(items, split)) == 1


def test_coverage_never_passes_the_upper_end():
    task = {"a-1": "X"}
    items = _groups({"a": [8, 4]}, task)  # X lives in one group of 4 out of 12 items
    for seed in range(6):
        split = assign_splits(items, 0.0, seed, share_range=(0.0, 0.2), cover_min_items=1)
        assert (split == "val").sum() in (0, 4, 8) and (split == "val").mean() <= 0.7


# --- reletter ------------------------------------------------------------------------------------------------------

def _lettered(n_units: int = 8) -> pd.DataFrame:
    rows = []
    for u in range(n_units):
        opts = [f"opt{u}-{k}" for k in range(4)]
        for twin in range(2):  # two items (twins) per unit, same options
            rows.append({"item_id": f"i{u}-{twin}", "unit_id": f"u{u}", "dataset_id": "d", "multi_answer": False,
                         "generator": "label", "A": opts[0], "B": opts[1], "C": opts[2], "D": opts[3], "E": None,
                         "answer": "A", "option_origins": ["dataset", "fallback", "dataset", "generated"]})
    rows.append({"item_id": "m", "unit_id": "um", "dataset_id": "d", "multi_answer": True, "generator": "label",
                 "A": "x", "B": "y", "C": None, "D": None, "E": None, "answer": "AB", "option_origins": ["dataset"] * 2})
    return pd.DataFrame(rows)


def test_reletter_keeps_each_key_and_balances_the_letters():
    items = _lettered()
    out = reletter(items, seed=3)
    assert out.index.equals(items.index) and len(out) == len(items)
    origin = {f"opt{u}-{k}": o for u in range(8) for k, o in enumerate(["dataset", "fallback", "dataset", "generated"])}
    for (_, before), (_, after) in zip(items.iterrows(), out.iterrows()):
        if before["multi_answer"]:
            assert after.to_dict() == before.to_dict()
            continue
        assert after[after["answer"]] == before["A"]  # the key's text is unchanged
        assert sorted(after[c] for c in "ABCD") == sorted(before[c] for c in "ABCD") and after["E"] is None
        assert list(after["option_origins"]) == [origin[after[c]] for c in "ABCD"]
    per_unit = out[~out["multi_answer"]].groupby("unit_id")[["A", "B", "C", "D", "answer"]].nunique()
    assert (per_unit == 1).all().all()  # twins carry the same letters
    letters = Counter(out[~out["multi_answer"]].drop_duplicates("unit_id")["answer"])
    assert sorted(letters.values()) == [2, 2, 2, 2]  # 8 units, 4 options: each letter correct twice


def test_reletter_leaves_scale_options_in_ascending_order():
    rows = [{"item_id": f"i{u}", "unit_id": f"u{u}", "dataset_id": "d", "multi_answer": False,
             "generator": "measurement", "A": "5–10 mm", "B": "2.5–5 mm", "C": "10–15 mm", "D": None, "E": None,
             "answer": "A", "option_origins": ["dataset"] * 3} for u in range(3)]
    out = reletter(pd.DataFrame(rows), seed=0)
    for _, r in out.iterrows():
        assert [r["A"], r["B"], r["C"]] == ["2.5–5 mm", "5–10 mm", "10–15 mm"] and r["answer"] == "B"


# --- boundaries and fields the first pass of the mutation run left open ---------------------------------------------

def test_bin_upper_margin_is_inclusive():
    assert bin_of(20, [10, 40], 1.0) == 0  # 40 / 2 = 20 exactly: not above it, so asked
    assert bin_of(20.01, [10, 40], 1.0) is None


def test_boxes_that_only_touch_are_apart():
    a = {"x0": 40, "x1": 50, "y0": 40, "y1": 50}
    for b in ({"x0": 50, "x1": 60, "y0": 45, "y1": 55}, {"x0": 45, "x1": 55, "y0": 50, "y1": 60}):
        assert position._apart(a, b) and position._apart(b, a)
    assert not position._apart(a, {"x0": 49, "x1": 60, "y0": 49, "y1": 60})


def test_relative_position_skips_bad_pairs_and_keeps_looking():
    """A and B overlap, C lies far to the right of both: every seed still finds a C pair, whichever pairs it
    tries first."""
    rows = [_box("A", 20, 50), _box("B", 24, 52), _box("C", 80, 50)]
    g = GeneratorSettings()
    for seed in range(20):
        (spec,) = position.plane_specs(rows, np.random.default_rng(seed), g)
        assert "C" in {m["region_id"] for m in spec.marks}
    # A-B too close, C far: the same holds for the distance rule; and for the sector rule with a 30-degree pair
    close = [_box("A", 50, 50, 1), _box("B", 56, 50, 1), _box("C", 50, 90, 1)]
    skew = [_box("A", 10, 50, 2), _box("B", 50, 50 - 40 * math.tan(math.radians(30)), 2), _box("C", 10, 90, 2)]
    for rows in (close, skew):
        for seed in range(20):
            (spec,) = position.plane_specs(rows, np.random.default_rng(seed), g)
            assert "C" in {m["region_id"] for m in spec.marks}


def test_relative_position_fields_and_the_sector_across_zero_degrees():
    # B 10 degrees below the horizontal to A's right: from B, A lies at 170 degrees; from A... from B's side the
    # angle is 350, which must wrap to sector 0
    rows = [_box("A", 50, 50, 2, department="dA", semantic_type="sA"),
            _box("B", 90, 50 + 40 * math.tan(math.radians(10)), 2, department="dB", semantic_type="sB")]
    got = {}
    for seed in range(12):
        (spec,) = position.plane_specs(rows, np.random.default_rng(seed), GeneratorSettings())
        a = spec.marks[0]
        assert (spec.generator, spec.image_id, spec.department, spec.semantic_type) == (
            "relative_position", "img", a["department"], a["semantic_type"])
        got[a["region_id"]] = (spec.params["sector"], round(spec.params["angle_deg"]))
    assert got == {"A": (4, 170), "B": (0, 350)}


def test_relative_position_uses_display_pixels_of_anisotropic_planes():
    """Stored offset (20, -80) px shown at 2 x 0.5 display px per stored px is (40, 40): 45 degrees, the diagonal."""
    rows = [_box("A", 70, 10, 2, scale=2.0, scale_y=0.5), _box("B", 50, 90, 2, scale=2.0, scale_y=0.5)]
    for seed in range(6):
        (spec,) = position.plane_specs(rows, np.random.default_rng(seed), GeneratorSettings())
        sec = 1 if spec.marks[0]["region_id"] == "A" else 5
        assert spec.params["sector"] == sec and spec.params["offset_display_px"] in ([40.0, 40.0], [-40.0, -40.0])


def test_size_fields_units_and_rounding_by_hand():
    rows = [_area_row("big", None, 100.12345) | {"department": "dB", "semantic_type": "sB"},
            _area_row("small", None, 40.0) | {"department": "dS", "semantic_type": "sS"}]
    for s in _all_specs(rows):
        key_row = {"largest": "big", "smallest": "small", "ratio": "big"}[s.params["mode"]]
        assert (s.image_id, s.department, s.semantic_type) == ("img", f"d{key_row[0].upper()}", f"s{key_row[0].upper()}")
        assert s.params["area_unit"] == "px" and sorted(s.params["areas"]) == [40.0, 100.123]


def test_size_margin_is_inclusive_and_smallest_of_three_by_hand():
    rows = [_area_row("a", 120.0), _area_row("b", 100.0)]  # 120 = 1.2 x 100 exactly
    assert {"largest", "smallest"} <= {s.params["mode"] for s in _all_specs(rows)}
    rows = [_area_row("a", 100.0), _area_row("b", 60.0), _area_row("c", 40.0)]  # 60 >= 48: smallest is c
    three = [s for s in _all_specs(rows, seeds=80) if len(s.marks) == 3 and s.params["mode"] == "smallest"]
    assert three
    for s in three:
        assert s.answers == [dict(zip([m["region_id"] for m in s.marks], s.colours))["c"].capitalize()]


def test_components_from_near_duplicates_alone_when_no_file_hash_is_known():
    rows = [("g2", "", "0000000000000000"), ("g1", None, "0000000000000001"), ("g3", "", "ffffffffffffffff")]
    comp = leak_components(pd.DataFrame(rows, columns=["group_id", "sha256", "phash"]), bits=1)
    assert comp.tolist() == ["g1", "g1", "g3"]


def test_results_keep_the_callers_index_and_the_seed_matters():
    items = _groups({"d": [1] * 10}).set_axis(range(100, 110))
    splits = [assign_splits(items, 0.3, seed) for seed in range(8)]
    assert all(s.index.equals(items.index) for s in splits)
    assert len({tuple(s) for s in splits}) > 1  # the seed decides which groups go, not the group names alone
    moved = [assign_splits(items, 0.0, seed, share_range=(0.3, 0.35)) for seed in range(8)]
    assert all((m == "val").sum() == 3 for m in moved) and len({tuple(m) for m in moved}) > 1
    leak = _items_for_index()
    assert leak_components(leak, 2).index.equals(leak.index)


def _items_for_index() -> pd.DataFrame:
    rows = [("g2", "s", "0000000000000000"), ("g1", "s", "ffffffffffffffff")]
    return pd.DataFrame(rows, columns=["group_id", "sha256", "phash"]).set_axis([7, 3])


def test_reletter_balances_each_dataset_on_its_own_and_keeps_origins():
    items = _lettered(4)
    other = _lettered(4).assign(dataset_id="e", unit_id=lambda d: "e" + d["unit_id"], item_id=lambda d: "e" + d["item_id"])
    both = pd.concat([items, other], ignore_index=True)
    for seed in range(6):
        out = reletter(both, seed)
        units = out[~out["multi_answer"]].drop_duplicates("unit_id")
        for _, part in units.groupby("dataset_id"):
            assert sorted(part["answer"]) == ["A", "B", "C", "D"]  # 4 units, 4 options: each letter once per dataset
    short = _lettered(1).assign(option_origins=lambda d: [["fallback"]] * len(d))  # one origin for four options
    out = reletter(short, 0)
    r = out.iloc[0]
    assert list(r["option_origins"]) == ["fallback" if r[c] == "opt0-0" else "dataset" for c in "ABCD"]
    none = _lettered(1).assign(option_origins=None)
    assert all(list(o) == ["dataset"] * 4 for o in reletter(none, 0)["option_origins"].iloc[:2])


def test_reletter_leaves_grounding_alone_and_boxes_in_letter_order():
    rows = [{"item_id": "g", "unit_id": "ug", "dataset_id": "d", "multi_answer": False, "generator": "grounding",
             "A": None, "B": None, "C": None, "D": None, "E": None, "answer": None, "option_origins": []}]
    rows += [{"item_id": f"l{u}", "unit_id": f"ul{u}", "dataset_id": "d", "multi_answer": False,
              "generator": "localisation", "A": "Box A", "B": "Box B", "C": "Box C", "D": None, "E": None,
              "answer": "A", "option_origins": ["dataset"] * 3} for u in range(6)]
    out = reletter(pd.DataFrame(rows), 1)
    assert out.iloc[0].to_dict() == pd.DataFrame(rows).iloc[0].to_dict()
    for _, r in out.iloc[1:].iterrows():
        assert [r["A"], r["B"], r["C"]] == ["Box A", "Box B", "Box C"]


# --- exact boundaries of the split rules and the leak counters (second mutation pass) ------------------------------

def _one_group_datasets(groups: dict[str, tuple[int, str]]) -> pd.DataFrame:
    """One dataset per group (dataset id = group id), so step 1 of the split puts nothing in val at a fraction of
    0 (a dataset with a single group keeps it in test); groups maps group -> (items, task)."""
    rows = [{"dataset_id": g, "group_id": g, "clinical_vqa_task": task} for g, (n, task) in groups.items()
            for _ in range(n)]
    return pd.DataFrame(rows)


def test_two_groups_of_a_dataset_always_split_one_and_one():
    """A dataset with exactly two groups: at a fraction of 1 the second stays in test (one group per side), and at
    a fraction of 0 the first still goes to val."""
    items = _groups({"d": [1, 1]})
    for seed in range(6):
        for fraction in (1.0, 0.0, 0.5):
            split = assign_splits(items, fraction, seed)
            assert sorted(split) == ["test", "val"], (seed, fraction)


def test_coverage_move_up_to_the_upper_end_exactly():
    """x1 (2 items of X) and x2 (3 items of X) and y (3 of Y) in datasets of their own: 8 items, nothing in val
    after step 1. X has 5 test items, exactly cover_min_items, so it asks for coverage; x1 goes: 0 + 2/8 = 0.25 is
    the upper end itself (not above), and x1 holds 2 of X's 5 items (at most half). Y (3 < 5 items) asks nothing."""
    items = _one_group_datasets({"x1": (2, "X"), "x2": (3, "X"), "y": (3, "Y")})
    for seed in range(6):
        split = assign_splits(items, 0.0, seed, share_range=(0.0, 0.25), cover_min_items=5)
        assert _val_groups(items, split) == {"x1"}, seed
    # with one item more demanded, X no longer asks: nothing moves
    assert (assign_splits(items, 0.0, 0, share_range=(0.0, 0.25), cover_min_items=6) == "test").all()


def test_coverage_move_keeps_exactly_half_of_the_task_in_test():
    """X lives in x1 and x2, two items each: moving either leaves 2 of 4 in test, exactly half, which is allowed;
    the upper end (0.5) is far from 2/8. Ties in size are broken by the seeded hash, so either may go, never both."""
    items = _one_group_datasets({"x1": (2, "X"), "x2": (2, "X"), "y": (4, "Y")})
    for seed in range(6):
        split = assign_splits(items, 0.0, seed, share_range=(0.0, 0.5), cover_min_items=4)
        got = _val_groups(items, split)
        assert got in ({"x1"}, {"x2"}), (seed, got)


def test_share_step_fills_up_to_the_upper_end_exactly():
    """Four single-item groups of one dataset, fraction 0: step 1 puts one in val (1/4). Range (0.5, 0.5): one more
    goes, since 1/4 + 1/4 = 0.5 is not above the upper end, overall nor within the dataset (2 <= 0.5 x 4)."""
    items = _groups({"d": [1, 1, 1, 1]})
    for seed in range(6):
        split = assign_splits(items, 0.0, seed, share_range=(0.5, 0.5))
        assert (split == "val").sum() == 2, seed


def test_share_step_stops_as_soon_as_the_lower_end_is_reached():
    """As above with range (0.5, 0.75): at 2 of 4 the lower end is reached and no third group moves, although a
    third would still fit under the upper end (3/4)."""
    items = _groups({"d": [1, 1, 1, 1]})
    for seed in range(6):
        split = assign_splits(items, 0.0, seed, share_range=(0.5, 0.75))
        assert (split == "val").sum() == 2, seed


def test_share_exactly_at_the_upper_end_moves_nothing_back():
    """Four single-item groups at a fraction of 1: step 1 stops at three in val (one group stays in test); 3/4 is
    the upper end itself, so none moves back. At an upper end of 0.5 one does."""
    items = _groups({"d": [1, 1, 1, 1]})
    for seed in range(6):
        assert (assign_splits(items, 1.0, seed, share_range=(0.0, 0.75)) == "val").sum() == 3, seed
        assert (assign_splits(items, 1.0, seed, share_range=(0.0, 0.5)) == "val").sum() == 2, seed


def test_one_cross_split_image_pair_of_each_kind_is_counted_and_shown():
    """Exactly one image per side: h0 in val and in test (1 x 1 = 1 same-hash pair), and h1 in val 1 bit from h2
    in test (1 cross pair). Two distinct hashes is enough to look for near pairs."""
    same = cross_split_near_duplicates(pd.Series(["00000000000000aa", "00000000000000aa"]), pd.Series(["val", "test"]), 2)
    assert same == (1, [("00000000000000aa", "00000000000000aa")])
    near = cross_split_near_duplicates(pd.Series(["0000000000000010", "0000000000000011"]), pd.Series(["val", "test"]), 2)
    assert near == (1, [("0000000000000010", "0000000000000011")])
    far = cross_split_near_duplicates(pd.Series(["0000000000000010", "00000000000000ef"]), pd.Series(["val", "test"]), 2)
    assert far == (0, [])  # 8 bits apart


def test_at_most_ten_examples_however_many_pairs_leak():
    """Ten hashes each in val and in test (ten same-hash pairs) and one more val/test pair 1 bit apart: eleven
    pairs are counted, and the examples stop at ten, all of them the same-hash pairs (listed first, by hash)."""
    hs = [f"{3 << (4 * k):016x}" for k in range(1, 11)]  # two bits set, at 4k and 4k + 1: any two are 4 bits apart
    phash = pd.Series(hs + hs + ["f000000000000000", "f000000000000001"])
    split = pd.Series(["val"] * 10 + ["test"] * 10 + ["val", "test"])
    n, examples = cross_split_near_duplicates(phash, split, 0)
    assert n == 10 and examples == [(h, h) for h in hs]  # bits 0: only identical hashes count
    n, examples = cross_split_near_duplicates(phash, split, 1)
    assert n == 11 and len(examples) == 10 and examples == [(h, h) for h in hs]


def test_two_images_alone_are_compared_for_near_duplicates():
    """Only two images, in two groups with no file hash: 1 bit apart joins them; 2 bits apart at bits=1 does not."""
    close = pd.DataFrame([("g2", "", "0000000000000000"), ("g1", "", "0000000000000001")],
                         columns=["group_id", "sha256", "phash"])
    assert leak_components(close, bits=1).tolist() == ["g1", "g1"]
    apart = close.assign(phash=["0000000000000000", "0000000000000003"])
    assert leak_components(apart, bits=1).tolist() == ["g2", "g1"]


def test_single_split_order_of_datasets_is_by_id_not_by_row_order():
    """Rows of dataset b come first, yet a (first by id) decides the shared component: a holds only it (4 items,
    target 2 at 0.5: 0 + 4/2 = 2 is not above it), so it is val; then b starts from those 4 val items of its 8,
    already at its target, and its own four groups stay in test."""
    rows = ([{"dataset_id": "b", "group_id": "shared"}] * 4 + [{"dataset_id": "b", "group_id": f"b{k}"} for k in range(4)]
            + [{"dataset_id": "a", "group_id": "shared"}] * 4)
    items = pd.DataFrame(rows)
    for seed in range(8):
        split = assign_splits(items, 0.5, seed)
        assert split.tolist() == ["val"] * 4 + ["test"] * 4 + ["val"] * 4, seed
        assert split.dtype == object  # plain Python strings, not pandas' string dtype


def test_a_group_that_would_overshoot_is_skipped_and_later_ones_still_go():
    """Groups of 6, 1 and 1 (8 items) at 0.25: target 2. The 6 overshoots (0 + 3 > 2) and stays in test wherever it
    comes in the seeded order; both 1s go (1/2 then 1 + 1/2 fit), after which the rule 'one group per side' stops."""
    items = _groups({"d": [6, 1, 1]})
    for seed in range(10):
        split = assign_splits(items, 0.25, seed)
        assert _val_groups(items, split) == {"d-1", "d-2"}, seed


def test_the_per_dataset_order_is_the_published_seeded_hash():
    """Which groups go to val is part of the published benchmark: the order is the group's sha256 over
    repr(seed), repr('split'), repr(dataset), repr(group), each followed by 0x1f (first 16 hex digits), re-derived
    here with hashlib. Ten single-item groups at 0.3: the first three in that order are val."""
    import hashlib

    def key(*parts):
        return hashlib.sha256(b"".join(repr(p).encode() + b"\x1f" for p in parts)).hexdigest()[:16]

    items = _groups({"d": [1] * 10})
    for seed in (0, 7, 123):
        want = set(sorted(items["group_id"].unique(), key=lambda g: key(seed, "split", "d", g))[:3])
        assert _val_groups(items, assign_splits(items, 0.3, seed)) == want, seed
    # moves in step 3 go smallest first, ties in the order of sha256 over (seed, 'split-move', group)
    for seed in (0, 7, 123):
        first = sorted(items["group_id"].unique(), key=lambda g: key(seed, "split", "d", g))[0]  # step 1 at 0
        rest = sorted(set(items["group_id"]) - {first}, key=lambda g: key(seed, "split-move", g))
        got = _val_groups(items, assign_splits(items, 0.0, seed, share_range=(0.3, 0.35)))
        assert got == {first, *rest[:2]}, seed


def test_a_dataset_starts_from_the_val_items_another_dataset_decided():
    """a holds only 'shared' (4 items): val at 0.5. b holds 'shared' (4) and four single groups: 4 of its 8 items are
    val already, its target, so none of b's own groups moves."""
    rows = ([{"dataset_id": "a", "group_id": "shared"}] * 4 + [{"dataset_id": "b", "group_id": "shared"}] * 4
            + [{"dataset_id": "b", "group_id": f"b{k}"} for k in range(4)])
    items = pd.DataFrame(rows)
    for seed in range(8):
        assert _val_groups(items, assign_splits(items, 0.5, seed)) == {"shared"}, seed


def test_share_step_from_an_empty_val_and_datasets_with_no_val_item():
    """Single-group datasets d1 (1 item), d2 (1), d3 (2), fraction 0: val is empty after step 1 (share 0, no
    dataset with a val item). Range (0.5, 1.0): the two 1-item groups go (1/4, then 2/4 reaches 0.5); each is
    the whole of its dataset, allowed at an upper end of 1.0."""
    items = _one_group_datasets({"d1": (1, "T"), "d2": (1, "T"), "d3": (2, "T")})
    for seed in range(6):
        assert _val_groups(items, assign_splits(items, 0.0, seed, share_range=(0.5, 1.0))) == {"d1", "d2"}, seed


def test_share_step_never_passes_the_upper_end_overall():
    """a: two groups of 3, b: ten of 1; at a fraction of 0 one group of each dataset is val: 4 of 16 items (a at
    50 %). Range (0.9, 0.3): b could take one more within its own 30 % (1 + 1 <= 3), but overall 5/16 = 0.3125 is
    above 0.3, so nothing moves and 4 items stay val."""
    items = _groups({"a": [3, 3], "b": [1] * 10})
    for seed in range(8):
        split = assign_splits(items, 0.0, seed, share_range=(0.9, 0.3))
        assert (split == "val").sum() == 4, seed
        assert len(_val_groups(items, split) & {"a-0", "a-1"}) == 1


def test_moving_back_keeps_every_covered_task_in_val():
    """Four single-item groups, tasks X, X, T, T; at a fraction of 1 three are val (so both tasks are). The upper
    end 0.5 sends one back, and only an X may go when the other X stays: T never loses its only val item... and
    whichever three were val, the two left cover X and T."""
    items = _groups({"d": [1, 1, 1, 1]}, {"d-0": "X", "d-1": "X"})
    for seed in range(10):
        split = assign_splits(items, 1.0, seed, share_range=(0.0, 0.5), cover_min_items=1)
        val = items[split == "val"]
        assert len(val) == 2 and set(val["clinical_vqa_task"]) == {"X", "T"}, seed


def test_coverage_handles_tasks_in_sorted_order_and_never_overshoots():
    """Tasks Y (rows first) and X, two groups of 2 items each, in datasets of their own (8 items); the upper end
    0.25 lets exactly one group of 2 go. Tasks are handled in sorted order, so X is covered, not Y."""
    items = _one_group_datasets({"y1": (2, "Y"), "y2": (2, "Y"), "x1": (2, "X"), "x2": (2, "X")})
    for seed in range(6):
        got = _val_groups(items, assign_splits(items, 0.0, seed, share_range=(0.0, 0.25), cover_min_items=4))
        assert got in ({"x1"}, {"x2"}), (seed, got)
    # an upper end of 0.2 is below any single group's 0.25: coverage moves nothing
    tight = _one_group_datasets({"x1": (2, "X"), "x2": (2, "X"), "y": (4, "Y")})
    assert (assign_splits(tight, 0.0, 0, share_range=(0.0, 0.2), cover_min_items=4) == "test").all()


def test_reletter_depends_on_the_seed_and_keeps_rows_after_skipped_ones():
    """The letters are a seeded placement: some seeds differ. Rows that are not re-lettered (a multi-answer unit)
    may come first: the re-lettered rows still get their own options and origins (the caller's index is kept)."""
    items = _lettered(8)
    answers = {tuple(reletter(items, seed)["answer"]) for seed in range(6)}
    assert len(answers) > 1
    shuffled = pd.concat([items.iloc[[-1]], items.iloc[:-1]]).set_axis(range(50, 50 + len(items)))
    out = reletter(shuffled, 2)
    assert out.index.equals(shuffled.index)
    origin = {f"opt{u}-{k}": o for u in range(8) for k, o in enumerate(["dataset", "fallback", "dataset", "generated"])}
    for _, r in out.iloc[1:].iterrows():
        assert r[r["answer"]] == f"{r['unit_id'].replace('u', 'opt')}-0"
        assert list(r["option_origins"]) == [origin[r[c]] for c in "ABCD"]
    assert out.iloc[0]["answer"] == "AB" and list(out.iloc[0]["option_origins"]) == ["dataset"] * 2


# --- leakage, second pass ------------------------------------------------------------------------------------------

def test_cross_split_count_over_several_pairs_by_hand():
    """val: h0, h0, h1; test: h1, h2 (h0 = 0, h1 = 1, h2 = 2; h0-h1 and h0-h2 1 bit apart, h1-h2 2 bits). At 1 bit:
    h1/h1 across the splits (1), h0 (val) x h1 (test) (2), h0 (val) x h2 (test) (2): 5 pairs."""
    phash = pd.Series(["0000000000000000", "0000000000000000", "0000000000000001", "0000000000000001",
                       "0000000000000002"])
    split = pd.Series(["val", "val", "val", "test", "test"])
    n, examples = cross_split_near_duplicates(phash, split, 1)
    assert n == 5
    assert examples == [("0000000000000001", "0000000000000001"), ("0000000000000000", "0000000000000001"),
                        ("0000000000000000", "0000000000000002")]
    # near pairs within one split are not examples, nor counted
    within = cross_split_near_duplicates(pd.Series(["0000000000000000", "0000000000000001", "ffffffffffffffff"]),
                                         pd.Series(["val", "val", "test"]), 1)
    assert within == (0, [])


def test_identical_phash_alone_joins_two_groups_and_empty_hashes_join_nothing():
    """g2 and g1 share a pHash and nothing else: one component. g3 has an empty pHash and g4 a zero one: an empty
    hash is no hash (not 0), so they stay apart even at 1 bit. g9, the last group by name, has no hash at all."""
    rows = [("g2", "s2", "123456789abcdef0"), ("g1", "s1", "123456789abcdef0"), ("g3", "", ""),
            ("g4", "", "0000000000000000"), ("g9", "", None)]
    comp = leak_components(pd.DataFrame(rows, columns=["group_id", "sha256", "phash"]), bits=1)
    assert comp.tolist() == ["g1", "g1", "g3", "g4", "g9"]
    assert comp.dtype == object


def test_empty_items_keep_the_callers_index():
    items = pd.DataFrame({"group_id": [], "sha256": [], "phash": []},
                         index=pd.Index([], dtype=object, name="item_id"))
    comp = leak_components(items, bits=2)
    pd.testing.assert_index_equal(comp.index, items.index, exact=True)
