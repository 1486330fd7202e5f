"""Leakage components: groups joined across registrations by identical or near-identical planes, and the
split keeping each component on one side."""

from __future__ import annotations

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
