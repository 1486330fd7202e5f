"""Templates (LLM through a local OpenAI-protocol server, and the offline bank), validation, options, assembly."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from pipelines.config import LLMSettings, PipelineConfig, QuestionSettings
from pipelines.candidates.assemble import assign_letters
from pipelines.llm import LLMClient, LLMResponseError
from pipelines.candidates.options import count_options, distractor_candidates, n_distractors
from pipelines.candidates.templates import generate_templates, load_reviews, save_review
from pipelines.candidates.validate import Candidate, fill, load_cues, review_status, to_placeholder, validate
from pipelines.storage import atomic_write_table
from pipelines.vocab.hierarchy import Hierarchy
from tests.openai_server import OpenAIServer

GOOD = ["This is a CT image. Which organ occupies the highlighted region?",
        "Looking at the marked area of this CT scan, which anatomical structure is it?",
        "Which organ does the shaded overlay on this CT image cover?"]
BAD = ["Is the marked area in this CT image the liver?",                # names a label
       "Which organ is inside the bounding box of this CT image?",      # box cue in a mask question
       "This is a CT image. Which organ occupies the highlighted region?",  # duplicate of GOOD[0]
       "Which organ is marked? Which one is it?"]                     # two questions, no modality


def templates_reply(body: dict) -> str:
    return json.dumps({"templates": GOOD + BAD})


@pytest.fixture()
def server():
    with OpenAIServer(templates_reply) as srv:
        yield srv


def client_for(server, tmp_path, **kw) -> LLMClient:
    settings = LLMSettings(base_url=server.base_url, cache_dir=tmp_path / "cache", max_retries=3, timeout_s=10, **kw)
    return LLMClient(settings, api_key="test-key")


SCHEMA = {"type": "object", "properties": {"templates": {"type": "array", "items": {"type": "string"}}},
          "required": ["templates"], "additionalProperties": False}
MESSAGES = [{"role": "user", "content": "write templates"}]


def test_cache_hit_makes_no_request(server, tmp_path):
    client = client_for(server, tmp_path)
    data1, rec1 = client.complete_json(MESSAGES, "t", SCHEMA)
    data2, rec2 = client.complete_json(MESSAGES, "t", SCHEMA)
    assert len(server.requests) == 1 and not rec1.cached and rec2.cached and data1 == data2
    assert rec1.prompt_tokens == 120 and rec1.cost_usd == pytest.approx(120 * 2.5e-6 + 80 * 1e-5)
    sent = server.requests[0]["body"]
    assert sent["model"] == "gpt-4o" and sent["response_format"]["type"] == "json_schema"
    assert server.requests[0]["auth"] == "Bearer test-key"
    other, _ = client_for(server, tmp_path, temperature=0.2).complete_json(MESSAGES, "t", SCHEMA)
    assert len(server.requests) == 2  # a changed parameter is a cache miss


def test_retries_on_rate_limit_and_server_error(server, tmp_path):
    server.script = [(429, "slow down"), (500, "boom"), (200, json.dumps({"templates": ["x"]}))]
    data, rec = client_for(server, tmp_path).complete_json(MESSAGES, "t", SCHEMA)
    assert data == {"templates": ["x"]} and len(server.requests) == 3


def test_gives_up_after_retries_with_clear_error(server, tmp_path):
    server.script = [(500, "boom")] * 5
    with pytest.raises(LLMResponseError, match="InternalServerError"):
        client_for(server, tmp_path, ).complete_json(MESSAGES, "t", SCHEMA)
    assert len(server.requests) == 4  # first try + 3 retries


def test_malformed_json_is_an_error_and_not_cached(server, tmp_path):
    server.script = [(200, "here are your templates: [")]
    client = client_for(server, tmp_path)
    with pytest.raises(LLMResponseError, match="malformed JSON"):
        client.complete_json(MESSAGES, "t", SCHEMA)
    assert not list((tmp_path / "cache").rglob("*.json"))


def _vocab() -> pd.DataFrame:
    return pd.DataFrame([
        {"dataset_id": "ct", "raw_label": r, "canonical_label": c, "status": "mesh", "mesh_id": m, "mesh_name": c.title(),
         "tree_numbers": [t], "task": "Organ Recognition - Abdomen", "semantic_type": "organ",
         "department": "Gastroenterology and Hepatology", "modality": "CT", "granularities": ["contour", "mask"]}
        for r, c, m, t in [("liver", "liver", "D008099", "A03.620"), ("spleen", "spleen", "D013154", "A15.382.520.604.700"),
                           ("kidney_left", "kidney", "D007668", "A05.810.453")]])


def _config(tmp_path, **q) -> PipelineConfig:
    return PipelineConfig(data_root=tmp_path, questions=QuestionSettings(**q))


def test_llm_templates_validated_cached_and_reproducible(server, tmp_path):
    cfg = _config(tmp_path)
    client = client_for(server, tmp_path)
    run1 = generate_templates(_vocab(), cfg, load_cues(), client)
    calls = len(server.requests)
    assert calls == 3  # one request per sampled label of the one combination (3 labels <= 10)
    llm = run1.table.to_pandas().query("origin == 'llm:gpt-4o'")
    assert set(llm["modality_family"]) == {"radiology"}
    texts = dict(zip(llm["text"], llm["review_status"]))
    assert texts["This is a <modality> image. Which organ occupies the highlighted region?"] == "auto_accepted"
    assert texts["Is the marked area in this <modality> image the liver?"] == "rejected"
    rules = {t: v for t, v in zip(llm["text"], llm["validation"])}
    assert any(v.startswith("label_text") for v in rules["Is the marked area in this <modality> image the liver?"])
    assert any(v.startswith("granularity_conflict") for v in rules["Which organ is inside the bounding box of this <modality> image?"])
    assert any(v.startswith("one_question") for v in rules["Which organ is marked? Which one is it?"])
    assert sum(r.api_calls if hasattr(r, "api_calls") else (not r.cached) for r in run1.calls) == 3
    run2 = generate_templates(_vocab(), cfg, load_cues(), client)
    assert len(server.requests) == calls and all(r.cached for r in run2.calls)  # no new API call
    a = atomic_write_table(run1.table, tmp_path / "a.parquet").read_bytes()
    b = atomic_write_table(run2.table, tmp_path / "b.parquet").read_bytes()
    assert a == b


def test_no_key_falls_back_to_bank_and_says_so(tmp_path):
    client = LLMClient(LLMSettings(cache_dir=tmp_path / "c"), api_key="")
    run = generate_templates(_vocab(), _config(tmp_path), load_cues(), client)
    assert any("no API key" in n for n in run.notes)
    df = run.table.to_pandas()
    assert set(df["origin"]) == {"bank"} and (df["review_status"] == "auto_accepted").all()
    cues = load_cues()
    covered = {(t, g) for t, g in zip(df["task"], df["granularity"])}
    for task in cues.task_cues:  # every task has image-level templates; all but image-only tasks have box and mask ones
        assert (task, "image") in covered
    assert sum((t, "mask") in covered for t in cues.task_cues) >= 14


def test_malformed_model_output_is_recorded_and_bank_still_serves(server, tmp_path):
    server.script = [(200, "{not json")] * 3
    run = generate_templates(_vocab(), _config(tmp_path), load_cues(), client_for(server, tmp_path))
    assert sum(bool(r.error) for r in run.calls) == 3 and any("malformed JSON" in n for n in run.notes)
    assert (run.table.to_pandas()["origin"] == "bank").sum() > 200


@pytest.mark.parametrize("text,gran,sem,rule", [
    ("Which organ is shown in the marked area of this image?", "mask", "organ", "placeholder"),
    ("This is a <modality> image. What is shown in the marked area?", "mask", "organ", "task_cue"),
    ("This is a <modality> image. Which organ is in the boxed region?", "mask", "organ", "granularity_conflict"),
    ("Which organ is visible in this <modality> image?", "box", "organ", "granularity_cue"),
    ("Which organ appears in the highlighted region of this <modality> picture?", "image", "organ", "granularity_conflict"),
    ("This is a <modality> image. Which organ is the cell in the marked area?", "mask", "organ", "semantic_binding"),
    ("Which organ is shown in the marked area of this <modality> image, the spleen?", "mask", "organ", "label_text"),
    ("This is a <modality> image. The answer is obvious: which organ is in the marked area?", "mask", "organ", "answer_bearing"),
    ("Which organ is shown in the marked are of this <modality> image?", "mask", "organ", "typography"),
    ("Which organ is shown in the marked area of this \"<modality> image?", "mask", "organ", "typography"),
    ("Which organ is shown in the marked area of this <modality>\x07 image?", "mask", "organ", "typography"),
])
def test_validation_rules(text, gran, sem, rule):
    task = "Organ Recognition - Abdomen"
    fails = validate(Candidate(text, task, gran, sem), ["spleen", "liver"], [], load_cues())
    assert rule in {f.split(":")[0] for f in fails}, fails


def test_status_placeholder_and_article():
    assert review_status([]) == "auto_accepted"
    assert review_status(["typography: x"]) == "needs_review"
    assert review_status(["label_text: x", "typography: y"]) == "rejected"
    assert to_placeholder("Looking at this ct scan and this CT image", ["CT"]) == \
        "Looking at this <modality> scan and this <modality> image"
    assert fill("This is a <modality> image.", "X-ray") == "This is an X-ray image."
    assert fill("This is a <modality> image.", "MRI") == "This is an MRI image."
    assert fill("This is a <modality> image.", "CT") == "This is a CT image."
    assert fill("How many <target> are in this <modality> image?", "Microscopy", "platelets") == \
        "How many platelets are in this Microscopy image?"


def test_review_decision_persists(tmp_path):
    path = tmp_path / "reviews.yaml"
    save_review("abc", "accepted", "reads fine", path)
    save_review("def", "rejected", "ambiguous", path)
    assert load_reviews(path) == {"abc": {"status": "accepted", "note": "reads fine"},
                                  "def": {"status": "rejected", "note": "ambiguous"}}
    with pytest.raises(ValueError):
        save_review("x", "maybe", "", path)


def test_distractors_exclude_related_present_and_answers():
    vocab = pd.DataFrame({"canonical_label": ["tumor", "liver tumor", "liver", "spleen", "pulmonary nodule"],
                          "mesh_id": ["D009369", "D008113", "D008099", "D013154", "D003074"],
                          "tree_numbers": [["C04"], ["C04.588.274.623", "C06.301.623"], ["A03.620"],
                                           ["A15.382.520.604.700"], ["C08.381.540.140"]]})
    h = Hierarchy.from_vocab(vocab)
    pool = sorted(vocab["canonical_label"])
    assert distractor_candidates(["liver tumor"], {"spleen"}, pool, h) == ["liver", "pulmonary nodule"]


def test_distractor_count_rule():
    q = QuestionSettings()
    rng = np.random.default_rng(0)
    counts = Counter(n_distractors(rng, 10, q) for _ in range(2000))
    assert set(counts) == {1, 2, 3, 4}
    assert set(Counter(n_distractors(rng, 2, q) for _ in range(200))) == {1, 2}
    assert n_distractors(rng, 10, QuestionSettings(fixed_distractors=3)) == 3
    opts = count_options(np.random.default_rng(1), 2, q)
    assert opts[0] == "2" and len(set(opts)) == len(opts) and all(int(o) >= 0 for o in opts)


def test_count_key_rank_is_not_a_giveaway():
    """Text-only rules over the numbers alone (the middle of the sorted options, the option nearest their mean)
    do no better than chance, over 3000 count items with keys 1..40 (the ../shared build has no counting item
    left: BCCD's white cells are `narrow_count_range`, its other cells not exhaustive; so the rule is checked
    where the options are made)."""
    q, rng = QuestionSettings(), np.random.default_rng(11)
    middle, nearest_mean, chance = [], [], []
    for _ in range(3000):
        key = int(rng.integers(1, 41))
        opts = [int(o) for o in count_options(rng, key, q)]
        ordered = sorted(opts)
        middle.append(ordered[len(ordered) // 2] == key)
        nearest_mean.append(min(ordered, key=lambda o: abs(o - np.mean(opts))) == key)  # ties: the lower
        chance.append(1 / len(opts))
    assert np.mean(middle) <= np.mean(chance) + 0.03, (np.mean(middle), np.mean(chance))
    assert np.mean(nearest_mean) <= np.mean(chance) + 0.03, (np.mean(nearest_mean), np.mean(chance))


def test_letters_balanced_per_option_count():
    units = [{"unit_id": f"u{i}", "options": ["ans", "d1", "d2"][: 2 + i % 2], "multi": False} for i in range(400)]
    assign_letters(units, seed=7)
    for k in (2, 3):
        group = [u for u in units if len(u["options"]) == k]
        shares = Counter(u["answer"] for u in group)
        assert max(shares.values()) - min(shares.values()) <= 1
        assert all(u["ordered"]["ABC".index(u["answer"])] == "ans" for u in group)


def test_llm_tag_suggestion_is_recorded_as_such(tmp_path):
    """A label no rule can tag gets the LLM's pick (through the cached client), marked with its origin."""
    from pipelines.vocab.curated import load_curated
    from pipelines.vocab.llm_tags import llm_suggester
    from pipelines.vocab.normalize import Resolution
    from pipelines.vocab.tagging import Hints, Tagger

    def reply(body):
        schema = body["response_format"]["json_schema"]["schema"]
        return json.dumps({"value": schema["properties"]["value"]["enum"][0]})

    with OpenAIServer(reply) as srv:
        calls = []
        tagger = Tagger(load_curated().tagging, llm_suggester(client_for(srv, tmp_path), calls), "llm:gpt-4o")
        tags = tagger.tag(Resolution("zork", "zork"), "CT", Hints(), Hints())
        assert tags.semantic_type == "organ" and tags.origin["semantic_type"] == "llm:gpt-4o"
        assert len(srv.requests) == 3 and len(calls) == 3
