"""Build qa_candidates: one multiple-choice item per prompted image (twins share stem and options)."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

import pandas as pd
import pyarrow as pa

from pipelines import PIPELINE_VERSION
from pipelines.config import PipelineConfig
from pipelines.ids import derived_rng, stable_id
from pipelines.modalities import GMAI_MODALITY, QUESTION_FAMILY
from pipelines.questions.options import (
    build_pools,
    count_options,
    distractor_candidates,
    n_distractors,
    pool_key,
)
from pipelines.questions.validate import fill, granularity_group
from pipelines.records import QA_ITEMS, to_table
from pipelines.vocab.hierarchy import Hierarchy
from pipelines.vocab.taxonomy import GRANULARITY_NAMES

LETTERS = "ABCDE"


@dataclass
class DatasetInputs:
    dataset_id: str
    modality: str
    task_type: str
    prompts: pd.DataFrame
    regions: pd.DataFrame
    samples: pd.DataFrame  # sample_id, dim
    slice_png: dict[str, str]  # image_id -> unmarked slice PNG (counting questions show no overlay)


@dataclass
class Assembly:
    table: pa.Table
    skipped: Counter = field(default_factory=Counter)
    pool_sizes: dict = field(default_factory=dict)


def _plural(label: str) -> str:
    return label if label.endswith("s") else label + "s"


class TemplatePicker:
    """Accepted templates per (task, granularity, family); LLM ones preferred, bank as fallback."""

    def __init__(self, templates: pd.DataFrame):
        ok = templates[templates["review_status"].isin(["auto_accepted", "accepted"])]
        self.by_key: dict[tuple, list[tuple[str, str]]] = defaultdict(list)
        for r in ok.sort_values("template_id").itertuples(index=False):
            self.by_key[(r.task, r.granularity, r.modality_family)].append((r.template_id, r.text))

    def pick(self, rng, task: str, granularity: str, family: str) -> tuple[str, str] | None:
        options = self.by_key.get((task, granularity, family)) or self.by_key.get((task, granularity, "any"))
        if not options:
            return None
        return options[int(rng.integers(len(options)))]


def assign_letters(units: list[dict], seed: int) -> None:
    """Place the correct option so each letter is correct equally often per option count (±1 unit).

    Units are ordered by a seeded hash and given positions round-robin; distractors keep their
    seeded shuffled order in the remaining slots. Multi-answer units are shuffled as a whole."""
    by_k: dict[int, list[dict]] = defaultdict(list)
    for u in units:
        if u["multi"]:
            rng = derived_rng(seed, "multi-order", u["unit_id"])
            order = rng.permutation(len(u["options"])).tolist()
            u["ordered"] = [u["options"][i] for i in order]
            u["answer"] = ",".join(LETTERS[i] for i, opt in enumerate(u["ordered"]) if opt in u["answers"])
        else:
            by_k[len(u["options"])].append(u)
    for k, group in by_k.items():
        group.sort(key=lambda u: stable_id(seed, "letters", u["unit_id"]))
        for i, u in enumerate(group):
            pos = i % k
            rest = u["options"][1:]
            u["ordered"] = rest[:pos] + [u["options"][0]] + rest[pos:]
            u["answer"] = LETTERS[pos]


def assemble(inputs: list[DatasetInputs], vocab: pd.DataFrame, templates: pd.DataFrame,
             config: PipelineConfig, pools: dict | None = None) -> Assembly:
    q, seed = config.questions, config.seed
    hierarchy = Hierarchy.from_vocab(vocab)
    pools = pools if pools is not None else build_pools(vocab)
    picker = TemplatePicker(templates)
    vmap = {(r.dataset_id, r.raw_label): r for r in vocab.itertuples(index=False)}
    skipped: Counter = Counter()
    units: list[dict] = []

    def make_unit(ds: DatasetInputs, unit_id: str, rows: list[dict], answers: list[str], present: set[str],
                  tags, granularity: str, count: int | None = None, target: str | None = None,
                  singular: str | None = None) -> None:
        answer_label = f"the number of {target}: {count}" if count is not None else ";".join(answers)
        rng = derived_rng(seed, "item", unit_id)
        family = QUESTION_FAMILY.get(ds.modality, "other")
        if count is not None:  # '3 platelets': text, so TSV readers never turn options into floats
            options = [f"{n} {target if int(n) != 1 else singular}" for n in count_options(rng, count, q)]
            pool_size, task = None, "Counting"
            answers = options[:1]
        else:
            task = tags.task
            pool = pools.get(pool_key(ds.dataset_id, ds.modality, task, granularity), [])
            pool_size = len(pool)
            cands = distractor_candidates(answers, present, pool, hierarchy)
            if pool_size < 2 or not cands:
                skipped["pool_too_small"] += len(rows)
                return
            if len(answers) > 1:
                n = min(len(cands), len(LETTERS) - len(answers))
                if n < 1:
                    skipped["too_many_answers"] += len(rows)
                    return
            else:
                n = n_distractors(rng, len(cands), q)
            picked = sorted(rng.choice(len(cands), n, replace=False).tolist())
            distractors = [cands[i] for i in picked]
            rng.shuffle(distractors)
            options = list(answers) + distractors
        tpl = picker.pick(rng, task, granularity_group(granularity), family)
        if tpl is None:
            skipped["no_template"] += len(rows)
            return
        question = fill(tpl[1], ds.modality, target)
        units.append({"unit_id": unit_id, "rows": rows, "options": options, "answers": set(answers),
                      "multi": len(answers) > 1, "question": question, "template_id": tpl[0], "task": task,
                      "tags": tags, "pool_size": pool_size, "answer_label": answer_label, "ds": ds})

    for ds in sorted(inputs, key=lambda d: d.dataset_id):
        dims = dict(zip(ds.samples["sample_id"], ds.samples["dim"]))
        prompts = ds.prompts[(ds.prompts["flag"].fillna("") == "")]
        skipped["flagged_prompt"] += int(len(ds.prompts) - len(prompts))
        rl = dict(zip(ds.regions["region_id"], ds.regions["labels"]))
        region_labels = {p: {lab for rid in m for lab in (rl.get(rid) if rl.get(rid) is not None else [])}
                         for p, m in zip(prompts["prompt_id"], prompts["member_region_ids"])}
        groups: dict[str, list[dict]] = defaultdict(list)
        for row in prompts.to_dict("records"):
            groups[row["twin_id"] if isinstance(row["twin_id"], str) and row["twin_id"] else row["prompt_id"]].append(row)
        for unit_key in sorted(groups):
            rows = sorted(groups[unit_key], key=lambda r: r["granularity"])
            first = rows[0]
            entries = [vmap.get((ds.dataset_id, lab)) for lab in first["labels"]]
            if any(e is None or e.status == "unresolved" for e in entries):
                skipped["unresolved_label"] += len(rows)
                continue
            if any(not e.task for e in entries):
                skipped["untagged_label"] += len(rows)
                continue
            answers = sorted({e.canonical_label for e in entries})
            if len({e.task for e in entries}) > 1:
                skipped["mixed_tasks"] += len(rows)
                continue
            present = {vmap[(ds.dataset_id, lab)].canonical_label for lab in region_labels.get(first["prompt_id"], set())
                       if (ds.dataset_id, lab) in vmap}
            original = f"{ds.task_type.upper()}_{int(dims.get(first['sample_id'], 2))}D"
            for r in rows:
                r["original_task"] = original
            make_unit(ds, stable_id(seed, ds.dataset_id, unit_key), rows, answers, present, entries[0],
                      first["granularity"])
        if ds.task_type == "det" and q.counting:
            boxes = ds.regions[ds.regions["kind"] == "box"]
            image_rows = {r["image_id"]: r for r in ds.prompts.to_dict("records")}
            slices = boxes.groupby(["image_id", "raw_label"]).size()
            for (image_id, raw), count in slices.items():
                entry = vmap.get((ds.dataset_id, raw))
                base = image_rows.get(image_id)
                if entry is None or entry.status == "unresolved" or base is None:
                    continue
                row = dict(base, granularity="image", prompt_id=stable_id("count", image_id, raw),
                           png_path=ds.slice_png[image_id], original_task=f"DET_{int(dims.get(base['sample_id'], 2))}D")
                tags = entry._replace(task="Counting", semantic_type="count")
                make_unit(ds, stable_id(seed, ds.dataset_id, "count", image_id, raw), [row], [str(int(count))], set(),
                          tags, "image", count=int(count), target=_plural(entry.canonical_label),
                          singular=entry.canonical_label)
    assign_letters(units, seed)
    out = []
    for u in units:
        tags, ds = u["tags"], u["ds"]
        for r in u["rows"]:
            opts = u["ordered"] + [None] * (len(LETTERS) - len(u["ordered"]))
            out.append({
                "index": None, "item_id": stable_id(u["unit_id"], r["prompt_id"], r["granularity"]),
                "unit_id": u["unit_id"], "question": u["question"], **dict(zip(LETTERS, opts)),
                "answer": u["answer"], "answer_label": u["answer_label"], "multi_answer": u["multi"],
                "n_options": len(u["ordered"]), "clinical_vqa_task": u["task"], "department": tags.department,
                "perceptual_granularity": GRANULARITY_NAMES[r["granularity"]], "granularity": r["granularity"],
                "modality": ds.modality, "gmai_modality": GMAI_MODALITY.get(ds.modality, ds.modality),
                "original_task": r["original_task"], "semantic_type": tags.semantic_type,
                "group_id": r["group_id"], "image_id": r["image_id"], "prompt_id": r["prompt_id"],
                "image_path": r["png_path"], "template_id": u["template_id"], "pool_size": u["pool_size"],
                "split": None, "dataset_id": ds.dataset_id, "source_path": r["source_path"],
                "pipeline_version": PIPELINE_VERSION, "seed": seed})
    out.sort(key=lambda r: r["item_id"])
    for i, r in enumerate(out):
        r["index"] = i
    return Assembly(to_table(out, QA_ITEMS), skipped, {str(k): len(v) for k, v in pools.items()})
