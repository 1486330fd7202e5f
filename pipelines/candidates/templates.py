"""Question templates: the offline bank, GPT-4o generation per (task, granularity, family), review state."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import yaml

from pipelines import PIPELINE_VERSION
from pipelines.candidates.validate import (
    TEMPLATE_DIR,
    Candidate,
    Cues,
    granularity_group,
    review_status,
    to_placeholder,
    validate,
)
from pipelines.config import PipelineConfig
from pipelines.ids import derived_rng, stable_id
from pipelines.llm import CallRecord, LLMClient, LLMUnavailable
from pipelines.modalities import GMAI_MODALITY, QUESTION_FAMILY
from pipelines.records import QUESTION_TEMPLATES, to_table

BANK_PATH = TEMPLATE_DIR / "bank.yaml"
REVIEWS_PATH = TEMPLATE_DIR / "reviews.yaml"
GRANULARITY_HINT = {
    "image": "the whole image, no region is marked; the question must not mention any marked region or box",
    "box": "one region is marked by a drawn rectangle (bounding box); refer to it as the boxed region",
    "mask": "one region is marked by a coloured overlay or outline; refer to it as the marked or highlighted area",
}
SCHEMA = {"type": "object", "additionalProperties": False, "required": ["templates"],
          "properties": {"templates": {"type": "array", "items": {"type": "string"}}}}


@dataclass(frozen=True)
class Combination:
    task: str
    granularity: str  # image | box | mask
    family: str
    semantic_type: str


@dataclass
class TemplateRun:
    table: pa.Table
    calls: list[CallRecord] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def combinations(vocab: pd.DataFrame, counting_datasets: set[str] = frozenset()) -> dict[Combination, list[tuple[str, str, str]]]:
    """Combination -> [(label, modality, mesh name)] of the labels that need templates there."""
    out: dict[Combination, set] = defaultdict(set)
    for row in vocab.itertuples(index=False):
        if not row.task or row.status in ("unresolved", "excluded"):
            continue
        family = QUESTION_FAMILY.get(row.modality, "other")
        for g in {granularity_group(g) for g in row.granularities}:
            out[Combination(row.task, g, family, row.semantic_type or "")].add(
                (row.canonical_label, row.modality, row.mesh_name or ""))
        if row.dataset_id in counting_datasets and "box" in row.granularities:
            out[Combination("Counting", "image", family, "count")].add((row.canonical_label, row.modality, ""))
    return {k: sorted(v) for k, v in sorted(out.items(), key=lambda kv: tuple(vars(kv[0]).values()))}


def load_reviews(path: Path = REVIEWS_PATH) -> dict[str, dict]:
    if not path.exists():
        return {}
    return (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("decisions", {})


def bank_candidates(cues: Cues, path: Path = BANK_PATH) -> list[tuple[Candidate, str]]:
    """Every bank text, region stems expanded with each phrase of their granularity."""
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    out = []
    for task, forms in doc["tasks"].items():
        sem = cues.task_semantic_types[task]
        for stem in forms.get("image", []):
            out.append((Candidate(stem, task, "image", sem), "bank"))
        for stem in forms.get("region", []):
            for gran, phrases in doc["where"].items():
                for phrase in phrases:
                    out.append((Candidate(stem.replace("{where}", phrase), task, gran, sem), "bank"))
    return out


def _messages(combo: Combination, label: str, modality: str, mesh_name: str, n: int) -> list[dict]:
    system = ("You write multiple-choice question stems for a medical visual question answering benchmark. "
              "Reply with JSON only: {\"templates\": [...]}.")
    user = (f"Image modality: {modality}. Clinical task: {combo.task}. Perceptual granularity: "
            f"{GRANULARITY_HINT[combo.granularity]}. The answer for one such image is '{label}'"
            + (f" (MeSH: {mesh_name})" if mesh_name else "") + f"; it is a {combo.semantic_type or 'finding'}.\n"
            f"Write {n} different question stems a clinician could ask about such an image. Each stem: one question, "
            f"names the modality literally as '{modality}', makes the task clear, never names '{label}' or any other "
            "candidate answer, gives no hint that answers it without the image, does not list options.")
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def generate_templates(vocab: pd.DataFrame, config: PipelineConfig, cues: Cues, client: LLMClient | None,
                       counting_datasets: set[str] = frozenset()) -> TemplateRun:
    """Bank templates always; LLM templates per combination when a client with a key is available."""
    q = config.questions
    combos = combinations(vocab, counting_datasets)
    pool_labels: dict[tuple[str, str], list[str]] = defaultdict(list)
    for combo, labels in combos.items():
        pool_labels[(combo.task, combo.granularity)] += [lab for lab, _, _ in labels]
    reviews = load_reviews()
    rows: list[dict] = []
    accepted: dict[tuple, list[str]] = defaultdict(list)
    run = TemplateRun(table=None)

    def add(c: Candidate, family: str, origin: str, prompt_hash: str | None) -> None:
        tid = stable_id("template", c.task, c.granularity, family, c.semantic_type, c.text)
        key = (c.task, c.granularity, family)
        fails = validate(c, sorted(set(pool_labels.get((c.task, c.granularity), []))), accepted[key], cues,
                         q.near_duplicate_ratio)
        status = review_status(fails)
        if tid in reviews:
            status = reviews[tid]["status"]
        if status in ("auto_accepted", "accepted"):
            accepted[key].append(c.text)
        rows.append({"template_id": tid, "task": c.task, "granularity": c.granularity, "modality_family": family,
                     "semantic_type": c.semantic_type, "text": c.text, "origin": origin, "prompt_hash": prompt_hash,
                     "validation": fails, "review_status": status, "dataset_id": "*", "source_path": origin,
                     "pipeline_version": PIPELINE_VERSION, "seed": config.seed})

    for cand, origin in bank_candidates(cues):
        add(cand, "any", origin, None)

    if client is not None and q.use_llm:
        requests, meta = [], []
        for combo, labels in combos.items():
            rng = derived_rng(config.seed, "template-labels", *vars(combo).values())
            picked = [labels[i] for i in sorted(rng.choice(len(labels), min(q.labels_per_combination, len(labels)),
                                                           replace=False))]
            for label, modality, mesh_name in picked:
                requests.append((_messages(combo, label, modality, mesh_name, q.templates_per_label),
                                 "question_templates", SCHEMA))
                meta.append((combo, modality))
        try:
            client.require_key()
            results = client.map_json(requests, on_error=lambda e: run.notes.append(str(e)))
        except LLMUnavailable as exc:
            run.notes.append(str(exc))
            results = []
        for (combo, modality), (data, record) in zip(meta, results):
            run.calls.append(record)
            if data is None:
                continue
            names = [modality, GMAI_MODALITY.get(modality, modality)]
            for text in data.get("templates", [])[: q.templates_per_label]:
                if not isinstance(text, str):
                    continue
                cand = Candidate(to_placeholder(" ".join(text.split()), names), combo.task, combo.granularity,
                                 combo.semantic_type or cues.task_semantic_types.get(combo.task, ""))
                add(cand, combo.family, f"llm:{record.model}", record.prompt_hash)
    elif client is None or not q.use_llm:
        run.notes.append("LLM use is off: offline bank only")
    seen: set[str] = set()
    unique = [r for r in rows if not (r["template_id"] in seen or seen.add(r["template_id"]))]
    run.table = to_table(sorted(unique, key=lambda r: r["template_id"]), QUESTION_TEMPLATES)
    return run


def pending(table: pd.DataFrame) -> pd.DataFrame:
    return table[table["review_status"] == "needs_review"]


def save_review(template_id: str, status: str, note: str, path: Path = REVIEWS_PATH) -> None:
    """Persist one human decision (accepted/rejected) in the repo's review file."""
    from pipelines.storage import atomic_write_bytes
    if status not in ("accepted", "rejected"):
        raise ValueError("status must be 'accepted' or 'rejected'")
    doc = {"decisions": load_reviews(path)}
    doc["decisions"][template_id] = {"status": status, "note": note}
    header = "# Human review decisions on question templates (written by `medbench templates review`).\n"
    atomic_write_bytes(path, (header + yaml.safe_dump(doc, sort_keys=True, allow_unicode=True)).encode("utf-8"))
