"""The benchmark's item checks on hand-made items: each planted defect is named, and only by its own check."""

import pandas as pd

from pipelines.candidates.audit import item_checks


def _item(item_id, question, answer, options, granularity="mask", **extra):
    letters = dict(zip("ABCDE", options + [None] * (5 - len(options))))
    return {"item_id": item_id, "unit_id": item_id, "question": question, "answer": answer, **letters,
            "granularity": granularity, "multi_answer": False, "n_options": len(options), "pool_size": 4,
            "source_region_ids": ["r1"], **extra}


def test_each_planted_defect_is_named_by_its_own_check():
    items = pd.DataFrame([
        _item("ok", "Which organ is shaded?", "A", ["liver", "spleen", "kidney"]),
        _item("dup", "Which organ is shaded?", "A", ["liver", "spleen", "Spleen"]),
        _item("among", "Which organ is shaded?", "A", ["spleen", "spleen ", "kidney"]),
        _item("stem", "Is the shaded organ the liver?", "A", ["liver", "spleen", "kidney"]),
        _item("cue", "Which organ is outlined?", "C", ["liver", "spleen", "kidney"]),
    ]).assign(notes=[{"unread": 1}] * 5)  # a column no check reads, of a type no check could compare
    found = {o.name: o.metadata for o in item_checks(items)}
    assert found["duplicate_options"]["examples"] == "dup, among"  # 'spleen'/'Spleen', 'spleen'/'spleen ' are one
    assert found["answer_among_distractors"]["examples"] == "among"
    assert found["stem_contains_option"]["examples"] == "stem"
    assert found["cue_matches_rendering"]["examples"] == "cue"  # a mask item speaking of an outline
