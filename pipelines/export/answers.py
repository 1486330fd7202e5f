"""How a model's free-text reply to an exported item is read: a letter, several letters, or a box.

Standard library only: the lmms-eval task that ships with the export embeds this file verbatim, so a
reply scored by lmms-eval and by ``medbench evaluate`` is read by the same rules.

Single answer (``extract_choice``), first rule that gives a letter wins:
1. ``letter``: VLMEvalKit's ``can_infer_option``. The characters ``.()[],:;!*#{}`` become spaces; if exactly
   one of the item's option letters is a word of the reply and it is among the last five words, that letter.
   A refusal VLMEvalKit recognises, or a lone ``Z``, reads as ``Z`` (no option: wrong).
2. ``option_text``: VLMEvalKit's ``can_infer_text``. If the reply is at most twice as long as all option
   texts together and exactly one option text occurs in it (case-insensitive), that option.
3. ``answer_is`` (medbench rules only): the last "answer is X" / "answer: X" / "option X" phrase naming an
   option letter, for replies that name several letters ("B, because A is ...").
4. ``nested_text`` (medbench rules only): as rule 2 when one option text is part of another ("bladder",
   "gallbladder"): a text found only inside a longer found text does not count.
Rules 1-2 are VLMEvalKit's exact-matching extraction (``rules="vlmevalkit"``); rules 3-4 only read replies that
VLMEvalKit scores as unanswered. An optional LLM judge reads what no rule could.

Several answers (``extract_letters``): ``letters`` when the reply is only option letters and separators
("A,C", "A and C", "(A) (C)"); else ``answer_is`` ("the answers are A and C"); else ``option_text``: every
option whose text occurs in the reply. Scored as GMAI-MMBench does: exact set match, ACC = |P∩T|/|P| and
recall = |P∩T|/|T| per item, averaged over items (an empty prediction scores 0).

Boxes (``extract_box``): the first four numbers of the reply, read as [x0, y0, x1, y1]."""

from __future__ import annotations

import re

REFUSALS = ("Sorry, I can't help with images of people yet.", "I can't process this file.",
            "I'm sorry, but without the image provided", "Cannot determine the answer")
PUNCTUATION = ".()[],:;!*#{}"
ANSWER_IS = re.compile(r"(?i:\b(?:answer|option|choice)\s*(?:is|:|=)?\s*(?:option\s*)?)[\s(\[*\"']*"
                       r"([A-Z])(?![A-Za-z0-9])")
ANSWER_LIST = re.compile(r"(?i:\banswers?\s*(?:is|are|:|=)\s*(?:options?\s*)?)((?:[\s(\[*\"']*[A-Z][)\]*\"']*"
                         r"(?:\s*(?:,|;|/|&|\band\b)\s*)?)+)")
NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
RULES = ("vlmevalkit", "medbench")


def _words(text: str, extra: str = "") -> list[str]:
    for ch in PUNCTUATION + extra:
        text = text.replace(ch, " ")
    return [w.strip() for w in text.split()]


def letter_rule(text: str, options: dict[str, str]) -> str | None:
    """VLMEvalKit's can_infer_option (its quantifier check is verbose-mode only and off by default)."""
    if "Failed to obtain answer via API" in text:
        return None
    if any(r in text for r in REFUSALS):
        return "Z"
    words = _words(text)
    found = [c for c in options if c in words]
    if len(found) == 1:
        return found[0] if words.index(found[0]) > len(words) - 5 else None
    if not found and "Z" in words:
        return "Z"
    return None


def text_rule(text: str, options: dict[str, str]) -> str | None:
    """VLMEvalKit's can_infer_text: exactly one option text inside a reply of bounded length."""
    low = text.lower()
    if len(low) > 2 * sum(len(str(v)) for v in options.values()):
        return None
    found = [k for k, v in options.items() if str(v).lower() in low]
    return found[0] if len(found) == 1 else None


def nested_text_rule(text: str, options: dict[str, str]) -> str | None:
    """Like text_rule, but an option text found only inside a longer found option text does not count
    ("gallbladder" also contains "bladder"): exactly one option must remain."""
    low = text.lower()
    if len(low) > 2 * sum(len(str(v)) for v in options.values()):
        return None
    found = {k: str(v).lower() for k, v in options.items() if str(v).lower() in low}
    kept = []
    for k, t in found.items():
        rest = low
        for o in found.values():
            if len(o) > len(t) and t in o:
                rest = rest.replace(o, " ")
        if t in rest:
            kept.append(k)
    return kept[0] if len(kept) == 1 else None


def answer_is_rule(text: str, options: dict[str, str]) -> str | None:
    """The letter of the last "answer is X" phrase that names an option."""
    hits = [m.group(1) for m in ANSWER_IS.finditer(text) if m.group(1) in options]
    return hits[-1] if hits else None


def extract_choice(text: str | None, options: dict[str, str], rules: str = "medbench") -> tuple[str | None, str]:
    """(letter or None, rule that read it); 'none' when no rule could."""
    if text is None:
        return None, "none"
    text = str(text)
    steps = [("letter", letter_rule), ("option_text", text_rule)]
    if rules == "medbench":
        steps += [("answer_is", answer_is_rule), ("nested_text", nested_text_rule)]
    for name, rule in steps:
        got = rule(text, options)
        if got:
            return got, name
    return None, "none"


def extract_letters(text: str | None, options: dict[str, str]) -> tuple[frozenset[str], str]:
    """(set of letters, rule) for a multi-answer item; an empty set when nothing was read."""
    if text is None:
        return frozenset(), "none"
    text = str(text)
    words = [w for w in _words(text, "/&;") if w.lower() != "and"]
    if words and all(w in options for w in words):
        return frozenset(words), "letters"
    for m in ANSWER_LIST.finditer(text):
        got = {w for w in _words(m.group(1), "/&;\"'") if w in options}
        if got:
            return frozenset(got), "answer_is"
    low = text.lower()
    found = frozenset(k for k, v in options.items() if str(v).lower() in low)
    return (found, "option_text") if found else (frozenset(), "none")


def multi_scores(pred: frozenset[str], truth: frozenset[str]) -> tuple[bool, float, float]:
    """(exact match, ACC_mcq = |P∩T|/|P|, Recall_mcq = |P∩T|/|T|) of one multi-answer item."""
    n = len(pred & truth)
    return pred == truth, (n / len(pred) if pred else 0.0), (n / len(truth) if truth else 0.0)


def extract_box(text: str | None) -> list[float] | None:
    """The first four numbers of the reply as [x0, y0, x1, y1] (no rescaling here), or None."""
    if text is None:
        return None
    nums = NUMBER.findall(str(text))
    return [float(v) for v in nums[:4]] if len(nums) >= 4 else None


def iou(a: list[float] | None, b: list[float]) -> float:
    """Intersection over union of two [x0, y0, x1, y1] boxes; 0 for a missing or inverted prediction."""
    if a is None or a[2] <= a[0] or a[3] <= a[1]:
        return 0.0
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0.0) * max(h, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0

