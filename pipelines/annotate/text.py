"""Captions from the computed facts: an offline template, an optional LLM paragraph, and a fact check.

The fact check reads a text back against the fields: the label, the side, the area and the intensity
word must appear, and no other side, area bin, percentage or intensity word may contradict them.
Relation phrases ("to the patient's left of the spleen") describe other structures and are skipped.
"""

from __future__ import annotations

import json
import re

from pipelines.annotate.words import AREA_BINS, article

PARAGRAPH_SCHEMA = {"type": "object", "properties": {"paragraph": {"type": "string"}},
                    "required": ["paragraph"], "additionalProperties": False}
SYSTEM = ("You describe one region of interest of a medical image for a dataset of image-text pairs. "
          "Use only the facts given as JSON; do not add findings, diagnoses or measurements. Write one fluent "
          "paragraph of at most 90 words and use the phrases of the fields label, position, patient_side, "
          "area_text, area_word and intensity_word verbatim.")
PROMPT_FIELDS = ("modality", "plane", "label", "position", "patient_side", "area_text", "area_word",
                 "intensity_word", "boundary", "shape", "relations")


def _plane(axis: str | None) -> str:
    return f"{axis} plane" if axis in ("axial", "coronal", "sagittal") else "2D image"


def roi_caption(f: dict) -> str:
    """The coarse, always-available caption of one ROI (no LLM)."""
    parts = [f"{f['modality']} image ({_plane(f['axis'])}) from {f['dataset_id']}.",
             f"Region of interest: {f['label']}"
             + (f" (one of {f['instances']} instances on this image)" if f["instances"] > 1 else "") + ","
             + f" located {f['position_text']} in the image"
             + (f" ({f['patient_side']})" if f.get("patient_side") else "")
             + f", covering {f['area_text']} of the image ({f['area_word']})."]
    if f.get("intensity_word"):
        unit = " HU" if f.get("intensity_unit") == "HU" else ""
        parts.append(f"It is {f['intensity_word']} relative to its surroundings "
                     f"(mean {f['mean_in']:.0f}{unit} inside vs {f['mean_ring']:.0f}{unit} around it)"
                     + (f", with {article(f['boundary_word'])} boundary" if f.get("boundary_word") else "")
                     + (f" and {article(f['shape_word'])} outline" if f.get("shape_word") else "") + ".")
    if f.get("relation_text"):
        parts.append(f"It {f['relation_text']}." if not f["relation_text"].startswith("no ") else
                     "No other labelled structure is on this plane.")
    return " ".join(parts)


def image_caption(f: dict) -> str:
    """The global caption of a whole image: modality, plane, size, spacing and what is labelled on it."""
    spacing = f.get("spacing") or []
    mm = f", {spacing[0]:.2f} x {spacing[1]:.2f} mm pixels" if len(spacing) == 2 else ""
    side = f"; the viewer's left shows the {f['viewer_left']}" if f.get("viewer_left") else ""
    labels = ", ".join(f["structures"]) if f["structures"] else "none"
    return (f"{f['modality']} image ({_plane(f['axis'])}, {f['width']} x {f['height']} px{mm}{side}) "
            f"from {f['dataset_id']}. Labelled: {labels}.")


def prompt_messages(f: dict) -> list[dict]:
    facts = {"modality": f["modality"], "plane": _plane(f["axis"]), "label": f["label"],
             "position": f["position_text"], "patient_side": f.get("patient_side") or "not recorded",
             "area_text": f["area_text"], "area_word": f["area_word"],
             "intensity_word": f.get("intensity_word") or "not measured", "boundary": f.get("boundary_word"),
             "shape": f.get("shape_word"), "relations": f.get("relation_text")}
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": json.dumps({k: facts[k] for k in PROMPT_FIELDS}, ensure_ascii=False)}]


_SIDE = re.compile(r"patient'?s (left|right)(?! of)\b")
_H = re.compile(r"\b(left-cent(?:re|er)|right-cent(?:re|er)|left|right|cent(?:re|er)|central(?:ly)?) horizontally\b")
_INT = re.compile(r"\b(hypo|iso|hyper)-?(dense|intense|echoic|avid)\b")
_AREA = re.compile(r"\b(" + "|".join(sorted((w for _, w in AREA_BINS), key=len, reverse=True)) + r")\b")
_PCT = re.compile(r"(\d+(?:\.\d+)?)\s*%")


def _norm_h(word: str) -> str:
    return word.replace("center", "centre").replace("centrally", "centre").replace("central", "centre")


def fact_check(text: str, f: dict, tolerance_pp: float = 0.5) -> list[str]:
    """Problems of ``text`` against the facts (empty list: it passes)."""
    low = text.lower()
    issues = []
    label = f["label"].lower()
    if label not in low:
        issues.append(f"label '{f['label']}' missing")
    body = low.replace(label, " ")
    for s in f.get("relation_labels") or []:
        body = body.replace(s.lower(), " ")
    side = f.get("patient_side")
    fact_lr = re.search(r"patient's (left|right)", side or "")
    said = set(_SIDE.findall(body))
    if fact_lr:
        if fact_lr.group(1) not in said:
            issues.append(f"side '{fact_lr.group(0)}' missing")
        if said - {fact_lr.group(1)}:
            issues.append(f"contradicting side: patient's {', '.join(sorted(said - {fact_lr.group(1)}))}")
    elif side and said:
        issues.append(f"contradicting side: patient's {', '.join(sorted(said))} (fact: {side})")
    h_fact = f["position_text"].split(" horizontally")[0]
    h_said = {_norm_h(w) for w in _H.findall(body)}
    if h_said - {h_fact}:
        issues.append(f"contradicting horizontal position: {', '.join(sorted(h_said - {h_fact}))} (fact: {h_fact})")
    if not fact_lr and f["position_text"] not in low and h_fact not in h_said:
        issues.append(f"position '{f['position_text']}' missing")
    if f.get("intensity_word"):
        words = {a + b for a, b in _INT.findall(body)}
        if f["intensity_word"] not in words:
            issues.append(f"intensity '{f['intensity_word']}' missing")
        if words - {f["intensity_word"]}:
            issues.append(f"contradicting intensity: {', '.join(sorted(words - {f['intensity_word']}))}")
    area_words = set(_AREA.findall(body))
    pcts = [float(p) for p in _PCT.findall(body)]
    if f["area_word"] not in area_words and f["area_text"].lower() not in body:
        issues.append(f"area ('{f['area_word']}' or {f['area_text']}) missing")
    if area_words - {f["area_word"]}:
        issues.append(f"contradicting area word: {', '.join(sorted(area_words - {f['area_word']}))}")
    if pcts and not any(abs(p - 100 * f["area_ratio"]) <= tolerance_pp for p in pcts):
        issues.append(f"contradicting area: {pcts} vs {100 * f['area_ratio']:.1f}%")
    return issues
