"""Multiple-choice items for the selected candidate units (twins share options and answer; the contour
twin's stem speaks of an outline where the mask twin's speaks of shading)."""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

from pipelines import PIPELINE_VERSION
from pipelines.candidates.generators import phrasing
from pipelines.candidates.options import (
    build_pools,
    count_options,
    distractor_candidates,
    n_distractors,
    pool_for,
)
from pipelines.candidates.picker import TemplatePicker
from pipelines.candidates.rows import plural
from pipelines.candidates.validate import contour_stem, fill, granularity_group
from pipelines.config import GeneratorSettings, PipelineConfig, QuestionSettings
from pipelines.ids import derived_rng, stable_id
from pipelines.records import LETTERS, QA_ITEMS, to_table
from pipelines.taxonomy import GRANULARITY_NAMES
from pipelines.vocab.hierarchy import Hierarchy


@dataclass
class Assembly:
    table: pa.Table
    skipped: Counter = field(default_factory=Counter)


SCALE_GENERATORS = frozenset({"box_count", "instance_count", "size_ratio", "measurement"})
LETTERED = frozenset({"localisation"})  # options are the letters drawn on the image ("Box A", ...)


def leading_number(text: str) -> float:
    """The first number of an option ('12 ribs', '1.5–2 times', '20–30 mm')."""
    m = re.match(r"\s*(\d+(?:\.\d+)?)", text)
    return float(m.group(1)) if m else float("inf")


def assign_letters(units: list[dict], seed: int) -> None:
    """Place the correct option so each letter is correct equally often per dataset and option count (±1 unit).

    Balancing within each dataset keeps one dataset's letters independent of the others. Units are ordered by a
    seeded hash and given positions round-robin; distractors keep their
    seeded shuffled order in the remaining slots. Multi-answer units are shuffled as a whole. Options on a
    scale (counts, bins) are shown in ascending order instead: moving the key out of that order would point
    at it, and their generators already draw the key's rank uniformly."""
    by_k: dict[tuple, list[dict]] = defaultdict(list)
    for u in units:
        if u.get("grounding"):  # the answer is a box, not a letter
            u["ordered"], u["answer"] = [], None
        elif u.get("scale"):  # counts and bins read in ascending order; the key's rank is already uniform
            u["ordered"] = sorted(u["options"], key=leading_number)
            u["answer"] = LETTERS[u["ordered"].index(u["options"][0])]
        elif u["multi"]:
            rng = derived_rng(seed, "multi-order", u["unit_id"])
            order = rng.permutation(len(u["options"])).tolist()
            u["ordered"] = [u["options"][i] for i in order]
            u["answer"] = ",".join(LETTERS[i] for i, opt in enumerate(u["ordered"]) if opt in u["answers"])
        else:
            by_k[(u.get("dataset_id") or "", len(u["options"]))].append(u)
    for (_, k), group in by_k.items():
        group.sort(key=lambda u: stable_id(seed, "letters", u["unit_id"]))
        for i, u in enumerate(group):
            pos = i % k
            rest = u["options"][1:]
            u["ordered"] = rest[:pos] + [u["options"][0]] + rest[pos:]
            u["answer"] = LETTERS[pos]
            if u.get("lettered"):  # options name the letters drawn on the image; the key's box gets its letter
                u["ordered"] = [f"Box {c}" for c in LETTERS[:k]]


def _unit(rows: list[dict], rng: np.random.Generator, picker: TemplatePicker, pools: dict,
          hierarchy: Hierarchy, q: QuestionSettings, canonical: dict, g: GeneratorSettings) -> tuple[dict | None, str]:
    """Template and options of one selected unit (seeded by its id), or why it cannot be built.

    An image-level item never offers a label present anywhere on the image (it would be a second right
    answer); a region-level item asks about the marked region only, so a label drawn elsewhere on the
    same image is a fair, hard distractor."""
    first = rows[0]
    answers = list(first["answers"])
    target = None
    params = json.loads(first["generator_params"]) if isinstance(first.get("generator_params"), str) else None
    if params is not None and pd.isna(first["count"]):  # geometric question: options follow from the geometry
        options = phrasing.options(params, answers, rng, g)
        answers, origins = options[:1], dict.fromkeys(options, "generated")
        target = params.get("structure")
    elif pd.notna(first["count"]):  # '3 platelets': text, so TSV readers never turn options into floats
        count, singular = int(first["count"]), first["count_label"]
        target = plural(singular)
        if params is not None and params.get("dim_kind") == "volume":  # "rib cross-sections": 3 cross-sections
            target, singular = singular, "cross-section"
        many = plural(singular)
        values = phrasing.count_window(params, count, rng, g) if params is not None else count_options(rng, count, q)
        options = [f"{n} {many if int(n) != 1 else singular}" for n in values]
        answers, origins = options[:1], dict.fromkeys(options, "generated")
    else:
        near = first.get("nearby_labels")
        pool, origins = pool_for(pools, first["dataset_id"], first["modality"], first["clinical_vqa_task"],
                                 first["granularity"], answers, hierarchy,
                                 frozenset(near) if near is not None and not isinstance(near, float) else None)
        present = set(answers)
        if granularity_group(first["granularity"]) == "image":  # a whole-image question: nothing on it is wrong
            on_image = first.get("image_labels")
            present |= {canonical.get((first["dataset_id"], raw), raw) for raw in (on_image if on_image is not None else [])}
        cands = distractor_candidates(answers, present, pool, hierarchy)
        if len(pool) < 2 or not cands:
            return None, "pool_too_small"
        if len(answers) > 1:
            n = min(len(cands), len(LETTERS) - len(answers))
        elif granularity_group(first["granularity"]) == "image":  # a diagnosis: offer as many classes as there are
            n = min(len(cands), q.image_level_options - 1)
        else:
            n = n_distractors(rng, len(cands), q)
        if any(origins.get(c) == "fallback" for c in cands):  # a small pool filled from the curated vocabulary:
            n = max(n, min(2, len(cands)))  # at least 3 options, so the key is not a coin toss against one other
        picked = sorted(rng.choice(len(cands), n, replace=False).tolist())
        distractors = [cands[i] for i in picked]
        rng.shuffle(distractors)
        options = answers + distractors
    tpl = phrasing.stem(params, rng) if params is not None else \
        picker.pick(rng, first["clinical_vqa_task"], granularity_group(first["granularity"]), first["question_family"])
    if tpl is None:
        return None, "no_template"
    gen = first.get("generator")
    return {"options": options, "answers": set(answers), "multi": len(answers) > 1, "template_id": tpl[0],
            "scale": gen in SCALE_GENERATORS, "lettered": gen in LETTERED, "grounding": gen == "grounding",
            "box": params.get("box") if params is not None else None,
            "origins": {o: origins.get(o, "dataset") for o in options},
            "question": fill(tpl[1], first["modality"], target)}, ""


def assemble(selected: pd.DataFrame, vocab: pd.DataFrame, templates: pd.DataFrame, config: PipelineConfig,
             pools: dict | None = None) -> Assembly:
    """Multiple-choice items for the given candidate rows (the selected units): one seeded template and
    option set per unit, shared by its twins; correct letters balanced per option count."""
    q, seed = config.questions, config.seed
    hierarchy = Hierarchy.from_vocab(vocab)
    pools = pools if pools is not None else build_pools(vocab)
    picker = TemplatePicker(templates)
    canonical = dict(zip(zip(vocab["dataset_id"], vocab["raw_label"]), vocab["canonical_label"]))
    skipped: Counter = Counter()
    units: list[dict] = []
    records = selected.sort_values(["unit_id", "granularity"]).to_dict("records")
    for unit_id, group in itertools.groupby(records, key=lambda r: r["unit_id"]):
        rows = list(group)
        unit, reason = _unit(rows, derived_rng(seed, "item", unit_id), picker, pools, hierarchy, q, canonical,
                             config.generators)
        if unit is None:
            skipped[reason] += len(rows)
            continue
        units.append({**unit, "unit_id": unit_id, "rows": rows, "dataset_id": rows[0]["dataset_id"]})
    assign_letters(units, seed)
    out = []
    for u in units:
        for r in u["rows"]:
            opts = u["ordered"] + [None] * (len(LETTERS) - len(u["ordered"]))
            out.append({
                "index": None, "item_id": r["item_id"], "unit_id": u["unit_id"],
                "question": contour_stem(u["question"]) if r["granularity"] == "contour" else u["question"],
                **dict(zip(LETTERS, opts)), "answer": u["answer"], "answer_label": r["answer_label"],
                "multi_answer": u["multi"], "n_options": len(u["ordered"]), "clinical_vqa_task": r["clinical_vqa_task"],
                "department": r["department"], "perceptual_granularity": GRANULARITY_NAMES[r["granularity"]],
                "granularity": r["granularity"], "modality": r["modality"], "gmai_modality": r["gmai_modality"],
                "original_task": r["original_task"], "semantic_type": r["semantic_type"], "group_id": r["group_id"],
                "image_id": r["image_id"], "prompt_id": r["prompt_id"], "image_path": None,
                "template_id": u["template_id"], "pool_size": None if pd.isna(r["pool_size"]) else int(r["pool_size"]), "split": None,
                "split_group": None, "generator": r["generator"],
                "generator_params": r["generator_params"] if isinstance(r["generator_params"], str) else None,
                "source_region_ids": list(r["member_region_ids"]), "variant_of": None, "variant": None, "subset": "main",
                "dataset_id": r["dataset_id"], "source_path": r["source_path"], "pipeline_version": PIPELINE_VERSION,
                "seed": seed, "option_origins": [u["origins"][o] for o in u["ordered"]], "box": u["box"]})
    out.sort(key=lambda r: r["item_id"])
    for i, r in enumerate(out):
        r["index"] = i
    return Assembly(to_table(out, QA_ITEMS), skipped)
