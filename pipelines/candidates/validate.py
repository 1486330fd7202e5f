"""Automatic checks of a question template; every failing rule is recorded by name.

Hard rules reject a template; soft rules (style) send it to human review.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict
from rapidfuzz import fuzz

from pipelines.config import PROJECT_ROOT
from pipelines.vocab.text import form_key

TEMPLATE_DIR = PROJECT_ROOT / "templates"
PLACEHOLDER = "<modality>"
TARGET = "<target>"
HARD_RULES = {"placeholder", "task_cue", "granularity_cue", "granularity_conflict", "semantic_binding",
              "label_text", "answer_bearing", "near_duplicate", "one_question"}
SOFT_RULES = {"typography", "length"}


class Cues(BaseModel):
    model_config = ConfigDict(extra="forbid")
    granularity_cues: dict[str, list[str]]
    forbidden_granularity_cues: dict[str, list[str]]
    task_cues: dict[str, list[str]]
    task_semantic_types: dict[str, str]
    semantic_forbidden: dict[str, list[str]]
    answer_bearing: list[str]
    typos: list[str]
    rendering_cues: dict[str, list[str]] = {}
    contour_wording: dict[str, str] = {}


@lru_cache(maxsize=2)
def load_cues(path: str | Path | None = None) -> Cues:
    return Cues.model_validate(yaml.safe_load(Path(path or TEMPLATE_DIR / "cues.yaml").read_text(encoding="utf-8")))


def _has(words: list[str], key: str) -> bool:
    padded = f" {key} "
    return any(f" {form_key(w)} " in padded for w in words)


def granularity_group(granularity: str) -> str:
    """Mask and contour prompts share templates (twins carry one stem)."""
    return "mask" if granularity in ("mask", "contour") else granularity


@dataclass(frozen=True)
class Candidate:
    text: str
    task: str
    granularity: str  # image | box | mask
    semantic_type: str


def to_placeholder(text: str, modality_names: list[str]) -> str:
    """Put `<modality>` where the model wrote the modality's literal name (longest names first)."""
    for name in sorted({n for n in modality_names if n}, key=len, reverse=True):
        text = re.sub(rf"(?<![\w-]){re.escape(name)}(?![\w-])", PLACEHOLDER, text, flags=re.IGNORECASE)
    return text


def validate(c: Candidate, pool_labels: list[str], accepted: list[str], cues: Cues,
             near_duplicate_ratio: float = 90.0) -> list[str]:
    """Names (with detail) of the rules ``c`` breaks; empty when it passes."""
    fails: list[str] = []
    text = c.text
    key = form_key(text.replace(PLACEHOLDER, " modality ").replace(TARGET, " target "))
    if PLACEHOLDER not in text:
        fails.append("placeholder: no <modality> placeholder")
    if not _has(cues.task_cues.get(c.task, []), key):
        fails.append(f"task_cue: none of {cues.task_cues.get(c.task, [])[:4]}...")
    if not _has(cues.granularity_cues.get(c.granularity, []), key):
        fails.append(f"granularity_cue: no {c.granularity}-level cue")
    bad = [w for w in cues.forbidden_granularity_cues.get(c.granularity, []) if _has([w], key)]
    if bad:
        fails.append(f"granularity_conflict: a {c.granularity}-level question says {bad}")
    wrong = [w for w in cues.semantic_forbidden.get(c.semantic_type, []) if _has([w], key)]
    if wrong:
        fails.append(f"semantic_binding: a {c.semantic_type} question says {wrong}")
    leaked = [lab for lab in pool_labels if len(form_key(lab)) > 2 and _has([lab], key)]
    if leaked:
        fails.append(f"label_text: names {leaked[:3]}")
    giveaway = [w for w in cues.answer_bearing if _has([w], key)]
    if giveaway:
        fails.append(f"answer_bearing: {giveaway}")
    sentences = [s for s in re.split(r"(?<=[.?!])\s+", text.strip()) if s]
    if text.count("?") > 1 or len(sentences) > 2 or not text.rstrip().endswith(("?", ".")):
        fails.append("one_question: must be one question (at most one '?', ending in '?' or '.')")
    typo = _typography(text, cues)
    if typo:
        fails.append(f"typography: {typo}")
    n_words = len(text.split())
    if not 5 <= n_words <= 40:
        fails.append(f"length: {n_words} words")
    for other in accepted:
        if fuzz.token_sort_ratio(text.lower(), other.lower()) >= near_duplicate_ratio:
            fails.append(f"near_duplicate: of {other!r}")
            break
    return fails


def _typography(text: str, cues: Cues) -> str | None:
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in text):
        return "control or format character"
    if "  " in text or text != text.strip():
        return "stray whitespace"
    for open_, close in ("()", "[]", "{}"):
        if text.count(open_) != text.count(close):
            return f"unbalanced {open_}{close}"
    for quote in ('"', "“”"):
        if len(quote) == 1 and text.count(quote) % 2:
            return "unbalanced quotes"
        if len(quote) == 2 and text.count(quote[0]) != text.count(quote[1]):
            return "unbalanced quotes"
    low = f" {text.lower()} "
    for typo in cues.typos:
        if f" {typo} " in low or f" {typo}?" in low or f" {typo}." in low:
            return f"known typo {typo!r}"
    if re.search(r"\b(\w+) \1\b", text, flags=re.IGNORECASE):
        return "repeated word"
    return None


def review_status(fails: list[str]) -> str:
    rules = {f.split(":", 1)[0] for f in fails}
    if rules & HARD_RULES:
        return "rejected"
    return "needs_review" if rules else "auto_accepted"


def contour_stem(question: str, cues: Cues | None = None) -> str:
    """The contour twin's stem: the mask stem with every fill cue replaced by outline wording."""
    cues = cues or load_cues()
    out = question
    for phrase in sorted(cues.contour_wording, key=len, reverse=True):
        out = re.sub(rf"\b{re.escape(phrase)}\b", cues.contour_wording[phrase], out, flags=re.IGNORECASE)
    return out


def rendering_conflicts(question: str, granularity: str, cues: Cues | None = None) -> list[str]:
    """Cue words of the *other* rendering found in a mask or contour stem (must be empty): a contour item
    must not speak of shading, a mask item not of an outline."""
    cues = cues or load_cues()
    other = {"mask": "contour", "contour": "mask"}.get(granularity)
    if other is None:
        return []
    key = form_key(question)
    return [w for w in cues.rendering_cues.get(other, []) if _has([w], key)]


_VOWEL_SOUND_LETTERS = set("AEFHILMNORSX")


def fill(text: str, modality: str, target: str | None = None) -> str:
    """Substitute the placeholders and fix the article before them ('a X-ray' -> 'an X-ray')."""
    acronym = modality.split()[0].split("-")[0]
    vowel = (acronym.isupper() and acronym[0] in _VOWEL_SOUND_LETTERS) or modality[0].lower() in "aeiou"
    out = re.sub(r"\b([Aa])n? <modality>", lambda m: f"{m.group(1)}{'n' if vowel else ''} <modality>", text)
    out = out.replace(PLACEHOLDER, modality)
    return out.replace(TARGET, target) if target is not None else out
