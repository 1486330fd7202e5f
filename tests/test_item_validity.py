"""Fast checks of the item-validity rules (issue 14): count options, cue per rendering, exhaustive labels."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from pipelines.config import PipelineConfig, QuestionSettings
from pipelines.label_maps import LabelMap
from pipelines.candidates.options import count_options
from pipelines.candidates.templates import bank_candidates
from pipelines.candidates.validate import contour_stem, load_cues, rendering_conflicts


def _ranks(counts, q, draws=3000):
    rng = np.random.default_rng(3)
    out = []
    for i in range(draws):
        c = int(counts[i % len(counts)])
        opts = [int(o) for o in count_options(rng, c, q)]
        out.append((sorted(opts).index(c), len(opts), opts))
    return out


def test_count_key_rank_uniform_and_spread_scales():
    q = QuestionSettings(fixed_distractors=4)
    ranks = _ranks(list(range(5, 60)), q)
    share = Counter(r for r, _, _ in ranks)
    assert set(share) == set(range(5))
    assert max(share.values()) / len(ranks) < 0.2 + 0.03  # uniform over 5 places
    wide = [max(o) - min(o) for r, _, o in _ranks([50], q, 300)]
    narrow = [max(o) - min(o) for r, _, o in _ranks([5], q, 300)]
    assert np.mean(wide) > 2 * np.mean(narrow)
    assert all(min(o) >= 0 and len(set(o)) == len(o) for _, _, o in _ranks([0, 1, 2], q, 300))


@pytest.mark.parametrize("rule", ["middle", "closest_to_mean", "second_smallest"])
def test_text_only_rules_are_at_chance_on_counting(rule):
    """Rules that only read the numbers answer counting items at chance (they scored 0.62 vs 0.33 before)."""
    q = QuestionSettings()
    hits, chance = [], []
    for rank, k, opts in _ranks(list(range(3, 40)), q, 4000):
        s = sorted(opts)
        guess = {"middle": s[k // 2], "closest_to_mean": min(s, key=lambda v: abs(v - np.mean(s))),
                 "second_smallest": s[min(1, k - 1)]}[rule]
        hits.append(guess == s[rank])
        chance.append(1 / k)
    assert np.mean(hits) <= np.mean(chance) + 0.05


def test_contour_twins_get_outline_wording_for_every_bank_stem():
    stems = [c for c, _ in bank_candidates(load_cues()) if c.granularity == "mask"]
    assert stems
    for c in stems:
        assert not rendering_conflicts(c.text, "mask"), c.text
        assert not rendering_conflicts(contour_stem(c.text), "contour"), contour_stem(c.text)


def test_validator_rejects_a_fill_cue_on_an_outline_and_vice_versa():
    assert rendering_conflicts("Which organ is shown in the shaded overlay of this CT image?", "contour")
    assert rendering_conflicts("Which organ is outlined in this CT image?", "mask")
    assert not rendering_conflicts("Which organ is shown in the marked area of this CT image?", "contour")
    assert not rendering_conflicts("Which organ is shaded in this image?", "image")


def test_exhaustive_flag_per_label_and_dataset_default():
    lm = LabelMap.model_validate({"exhaustive": True, "labels": {"RBC": {"exhaustive": False}, "WBC": None}})
    assert lm.exhaustive_labels() == {"WBC"}
    assert LabelMap.model_validate({"labels": {"RBC": None}}).exhaustive_labels() == set()


def _bench(n: int, skewed: bool, seed: int = 0):
    """Single-answer items over four organ names; skewed: 'liver' is always the key."""
    import pandas as pd
    rng = np.random.default_rng(seed)
    names = ["liver", "spleen", "kidney", "pancreas"]
    rows = []
    for i in range(n):
        key = "liver" if skewed else names[int(rng.integers(4))]
        opts = [key] + [x for x in rng.permutation(names).tolist() if x != key][:2]
        opts = [opts[j] for j in rng.permutation(3)]
        rows.append({"item_id": f"i{i}", "unit_id": f"u{i}", "group_id": f"g{i}", "split_group": f"g{i}",
                     "split": "test" if i % 3 else "val", "question": "Which organ is shown in the marked area?",
                     "A": opts[0], "B": opts[1], "C": opts[2], "D": None, "E": None, "n_options": 3,
                     "answer": "ABC"[opts.index(key)], "multi_answer": False, "granularity": "mask",
                     "clinical_vqa_task": "Organ Recognition - Abdomen"})
    return pd.DataFrame(rows)


def test_blind_baseline_fails_on_a_text_prior_and_passes_at_chance():
    from pipelines.validity.blind import blind_predictions, blind_report
    leaky = blind_report(blind_predictions(_bench(300, True), 5, 0), 0.05, 30)
    assert leaky["accuracy"] > 0.9 and leaky["exceeds"] == ["overall", "Organ Recognition - Abdomen"]
    fair = blind_report(blind_predictions(_bench(300, False), 5, 0), 0.05, 30)
    assert abs(fair["chance"] - 1 / 3) < 1e-9 and fair["exceeds"] == []


@pytest.mark.parametrize("granularity,offered", [("image", {"spleen"}), ("mask", {"liver", "spleen"})])
def test_label_present_on_the_image_is_offered_only_at_region_level(granularity, offered):
    """Image level: a label drawn anywhere on the image is never a distractor (a second right answer).
    Region level: the question is about the marked region, so a label drawn elsewhere may be offered."""
    import pandas as pd

    from pipelines.candidates.assemble import _unit
    from pipelines.candidates.options import PoolKey
    from pipelines.candidates.picker import TemplatePicker
    from pipelines.vocab.hierarchy import Hierarchy
    vocab = pd.DataFrame({"dataset_id": ["d"] * 3, "raw_label": ["Kidney", "Liver", "Spleen"],
                          "canonical_label": ["kidney", "liver", "spleen"],
                          "mesh_id": ["D007668", "D008099", "D013154"],
                          "tree_numbers": [["A05.810.453"], ["A03.620"], ["A15.382.520.604.700"]]})
    group = "image" if granularity == "image" else "mask"
    templates = pd.DataFrame([{"template_id": "t", "task": "Organ Recognition - Abdomen", "granularity": group,
                               "modality_family": "any", "text": "Which organ is in this <modality> image?",
                               "review_status": "accepted"}])
    pools = {PoolKey("dataset:d", "CT", "Organ Recognition - Abdomen", group): ["kidney", "liver", "spleen"]}
    row = {"answers": ["kidney"], "count": None, "dataset_id": "d", "modality": "CT", "granularity": granularity,
           "clinical_vqa_task": "Organ Recognition - Abdomen", "question_family": "ct",
           "image_labels": ["Kidney", "Liver"]}
    seen = set()
    for seed in range(30):
        unit, why = _unit([row], np.random.default_rng(seed), TemplatePicker(templates), pools,
                          Hierarchy.from_vocab(vocab), QuestionSettings(), dict(zip(zip(vocab["dataset_id"], vocab["raw_label"]), vocab["canonical_label"])),
                          PipelineConfig().generators)
        assert unit is not None, why
        seen |= set(unit["options"]) - {"kidney"}
    assert seen == offered


def test_summary_names_datasets_that_yield_no_item(tmp_path):
    from pipelines.summary import Summary
    s = Summary(root=tmp_path, regions={"kvasir": 6, "bccd": 40, "empty": 0}, items={"bccd": 100},
                tables={"benchmark": 100}, not_built={"kvasir": {"pool_too_small": 10}})
    lines = s.empty_datasets()
    assert lines == ["  ERROR kvasir: 6 regions, 0 items; candidates not made: pool_too_small 10"]
    assert "datasets that yield no benchmark item" in s.render()


def test_a_task_exceeds_only_beyond_the_noise_of_its_item_count():
    """Worked by hand: at chance 1/3 a task's standard error is sqrt((1/3)(2/3)/n); 2.33 of them are 0.1252 at
    n = 77 and 0.0246 at n = 2,000."""
    from pipelines.validity.blind import beyond_noise
    assert not beyond_noise(0.4286, 1 / 3, 77)  # 0.095 above chance: luck at 77 items
    assert beyond_noise(0.47, 1 / 3, 77)  # 0.137 above
    assert beyond_noise(0.37, 1 / 3, 2000) and not beyond_noise(0.355, 1 / 3, 2000)
    assert not beyond_noise(1.0, 1 / 3, 0)
