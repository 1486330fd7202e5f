"""Leakage components: groups joined across registrations by identical or near-identical planes, and the
split keeping each component on one side."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipelines.validity.leakage import cross_split_near_duplicates, leak_components, withhold_marked_leaks
from pipelines.select.splits import assign_splits


def _items() -> pd.DataFrame:
    # ct_sm (dataset a) is a crop of ct_full (dataset b): one plane is pixel-identical across them;
    # two blood-smear photographs (c1, c2) of one field differ by 2 pHash bits
    rows = [("a", "a1", "s1", "0f0f0f0f0f0f0f0f"), ("a", "a2", "s2", "00ff00ff00ff00ff"),
            ("b", "b1", "s1", "0f0f0f0f0f0f0f0f"), ("b", "b2", "s9", "ffff0000ffff0000"),
            ("c", "c1", "x1", "123456789abcdef0"), ("c", "c2", "x2", "123456789abcdef3"),
            ("c", "c3", "x3", "fedcba9876543210")]
    return pd.DataFrame(rows, columns=["dataset_id", "group_id", "sha256", "phash"])


def test_identical_plane_and_near_duplicate_join_groups():
    comp = leak_components(_items(), bits=4)
    assert comp[0] == comp[2] == "a1"  # across datasets, by the shared plane hash
    assert comp[4] == comp[5] == "c1"  # near-identical photographs
    assert len({comp[1], comp[3], comp[6]} | {comp[0], comp[4]}) == 5


def test_split_keeps_components_whole_across_datasets():
    items = pd.concat([_items()] * 3, ignore_index=True)
    items["split_group"] = leak_components(items, bits=4)
    for seed in range(20):
        split = assign_splits(items, 0.5, seed, by="split_group")
        assert (items.assign(s=split).groupby("split_group")["s"].nunique() == 1).all()
        n, _ = cross_split_near_duplicates(items["phash"], split, 4)
        assert n == 0


def test_per_group_split_leaks_and_the_count_sees_it():
    """Without the components, some seed puts the shared plane on both sides, and the counter notices."""
    items = _items()
    leaks = [cross_split_near_duplicates(items["phash"], assign_splits(items, 0.5, s), 4)[0] for s in range(20)]
    assert max(leaks) > 0


def test_marks_that_pull_two_groups_together_withhold_the_val_side():
    """Two groups whose planes were apart end up within 4 bits once marked (as warped copies of one CT did at
    32 volumes): the val item and its mirror are withheld, test keeps everything, and nothing else goes."""
    rows = [("v1", "val", "main", None, "123456789abcdef0"), ("v1m", "val", "main", "v1", "0000000000000000"),
            ("t1", "test", "main", None, "123456789abcdef7"),  # 3 bits from v1
            ("v2", "val", "main", None, "fedcba9876543210"), ("t2", "test", "main", None, "00ff00ff00ff00ff"),
            ("t2r", "test", "robustness", "t2", "fedcba9876543210"),  # robustness copies are not compared
            ("v3", "val", "main", None, "ffff0000ffff0000"), ("t3", "test", "main", None, "ffff0000ffff0000")]
    items = pd.DataFrame(rows, columns=["item_id", "split", "subset", "variant_of", "phash"])
    before, _ = cross_split_near_duplicates(items.loc[items.subset == "main", "phash"],
                                            items.loc[items.subset == "main", "split"], 4)
    kept, withheld = withhold_marked_leaks(items, 4)
    assert before == 2 and withheld == ["v1", "v1m", "v3"]
    assert set(kept["item_id"]) == {"t1", "v2", "t2", "t2r", "t3"}
    main = kept[kept.subset == "main"]
    assert cross_split_near_duplicates(main["phash"], main["split"], 4)[0] == 0
    assert withhold_marked_leaks(items[items.split == "test"], 4)[1] == []


def test_one_source_twice_is_one_identity_but_another_task_on_it_is_not():
    """Two segmentations of the same images are one source read twice: the later one's planes go. A diagnosis of
    those images asks something else of them and keeps its own; the splits still see one scan (the leakage
    components join by the shared plane hash)."""
    from pipelines.select.dedupe import duplicate_pairs, duplicate_planes, same_folder_pairs
    shas = ["a" * 64, "b" * 64, "c" * 64]
    planes = pd.DataFrame({
        "image_id": [f"{ds}-{i}" for ds in ("seg1", "seg2", "dx") for i in range(3)],
        "dataset_id": [ds for ds in ("seg1", "seg2", "dx") for _ in range(3)],
        "sha256": shas * 3,
        "phash": ["0123456789abcdef", "fedcba9876543210", "00ff00ff00ff00ff"] * 3,
        "task_type": ["seg"] * 6 + ["cls"] * 3})
    assert duplicate_pairs(planes) == [("seg1", "seg2", 1.0)]
    assert duplicate_planes(planes, 4) == {"seg2-0": "seg1", "seg2-1": "seg1", "seg2-2": "seg1"}
    untyped = planes.drop(columns="task_type")  # without task types every pair reading the same images counts
    assert duplicate_pairs(untyped) == [("dx", "seg1", 1.0), ("dx", "seg2", 1.0), ("seg1", "seg2", 1.0)]
    roots = {"seg1": Path("/data/x"), "seg2": Path("/data/x"), "dx": Path("/data/x")}
    assert same_folder_pairs(roots, {"seg1": "seg", "seg2": "seg", "dx": "cls"}) == [("seg1", "seg2")]
    assert same_folder_pairs(roots) == [("dx", "seg1"), ("dx", "seg2"), ("seg1", "seg2")]


def _cap_rows() -> pd.DataFrame:
    """Component A: groups a1 and a2 joined by a shared plane; task T with answer x (10 units) and y (3 units).
    Component B: group b, 5 units of task T. Distinct pHashes far apart, so only the shared sha256 joins."""
    rows = []
    for i in range(10):
        rows.append({"unit_id": f"ax{i}", "group_id": "a1" if i < 5 else "a2", "sha256": "s" if i in (0, 5) else f"x{i}",
                     "answer_label": "x"})
    rows += [{"unit_id": f"ay{i}", "group_id": "a1", "sha256": f"y{i}", "answer_label": "y"} for i in range(3)]
    rows += [{"unit_id": f"b{i}", "group_id": "b", "sha256": f"b{i}", "answer_label": "x"} for i in range(5)]
    frame = pd.DataFrame(rows).assign(clinical_vqa_task="T")
    return frame.assign(phash=[f"{(0x9E3779B97F4A7C15 * (i + 1)) % 2**64:016x}" for i in range(len(frame))])


def test_one_component_gives_a_task_at_most_cap_units_with_answers_taking_turns():
    from pipelines.select.units import cap_per_component
    rows = _cap_rows()
    dropped = cap_per_component(rows, cap=6, bits=0, seed=3)
    kept = set(rows["unit_id"]) - set(dropped)
    # A holds 13 units over two groups (one patient): 6 stay, 3 of each answer (turns x, y, x, y, x, y); B is under
    assert len(dropped) == 7 and set(dropped.values()) == {"component_task_cap"}
    assert sum(u.startswith("ax") for u in kept) == 3 and sum(u.startswith("ay") for u in kept) == 3
    assert {f"b{i}" for i in range(5)} <= kept
    # B's units never change which of A's stay, and a component under the cap loses nothing
    alone = cap_per_component(rows[~rows["unit_id"].str.startswith("b")], cap=6, bits=0, seed=3)
    assert alone == dropped
    assert cap_per_component(rows, cap=13, bits=0, seed=3) == {}
