"""Captions from the computed facts: an offline template, an optional LLM paragraph, and a fact check.

The fact check reads a text back against the fields: the name, the side, the area and the intensity
word must appear, and no other side, area bin, percentage, intensity word, count or size may contradict
them. A count may only be stated for an exhaustively labelled structure, a size in millimetres only when
the spacing is known. Phrases naming other structures ("to the patient's left of the spleen") are skipped.
"""

from __future__ import annotations

import json
import re

from pipelines.annotate.words import ALL_INTENSITY_WORDS, AREA_BINS, article

PARAGRAPH_SCHEMA = {"type": "object", "properties": {"paragraph": {"type": "string"}},
                    "required": ["paragraph"], "additionalProperties": False}
SYSTEM = ("You describe one region of interest of a medical image for a dataset of image-text pairs. "
          "Use only the facts given as JSON; do not add findings, diagnoses, counts or measurements. Write one "
          "fluent paragraph of at most 110 words and use the phrases of the fields name, position, patient_side, "
          "area_text, area_word and intensity_word verbatim. State a count or a size only if a field gives it.")
PROMPT_FIELDS = ("modality", "plane", "name", "position", "patient_side", "area_text", "area_word",
                 "intensity_word", "colour", "boundary", "shape", "count_on_plane", "lesion", "relations", "context")


def _plane(axis: str | None) -> str:
    return f"{axis} plane" if axis in ("axial", "coronal", "sagittal") else "2D image"


def _unit(axis: str | None) -> str:
    return "plane" if axis in ("axial", "coronal", "sagittal") else "image"


def count_sentence(f: dict) -> str | None:
    n = f.get("count_on_plane")
    if n is None:
        return None
    return (f"The {f['name']} label forms " + ("1 region" if n == 1 else f"{n} separate regions")
            + f" on this {_unit(f['axis'])}.")


def size_phrase(f: dict) -> str | None:
    if f.get("diameter_mm") is None:
        return None
    return f"longest in-plane diameter {f['diameter_mm']:.1f} mm (area {f['area_mm2']:.1f} mm²)"


def lesion_sentence(f: dict) -> str | None:
    """Lesion attributes the mask supports: size (mm only with a known spacing), margin, multiplicity, the
    part of the containing structure it lies in and the share of it it covers."""
    if not f.get("is_lesion"):
        return None
    parts = [p for p in (size_phrase(f), f"{f['margin_word']} margin" if f.get("margin_word") else None,
                         f.get("multiplicity")) if p]
    text = f"Lesion attributes: {'; '.join(parts)}." if parts else ""
    if f.get("container"):
        text += (f" It lies in the {f['container_position']} of {f['container']}, covering "
                 f"{100 * f['container_ratio']:.1f}% of it.")
    return text.strip() or None


def _intensity(f: dict) -> str | None:
    if not f.get("intensity_word"):
        return None
    what, unit = {"HU": ("", " HU"), "raw": ("signal ", ""), "grey8": ("grey level ", "")}.get(f.get("intensity_unit"),
                                                                                              ("", ""))
    scale = {"raw": ", scanner units", "grey8": ", of 255"}.get(f.get("intensity_unit"), "")
    text = (f"Compared with its surroundings it is {f['intensity_word']} (mean {what}{f['mean_in']:.0f}{unit} "
            f"inside vs {f['mean_ring']:.0f}{unit} around it{scale})")
    text += f", with {article(f['boundary_word'])} boundary" if f.get("boundary_word") else ""
    text += f" and {article(f['shape_word'])} outline" if f.get("shape_word") else ""
    return text + "."


def roi_caption(f: dict) -> str:
    """The coarse, always-available caption of one ROI (no LLM)."""
    parts = [f"{f['modality']} image ({_plane(f['axis'])}) from {f['dataset_id']}.",
             f"Region of interest: {f['name']}, located {f['position_text']} in the image"
             + (f" ({f['patient_side']})" if f.get("patient_side") else "")
             + f", covering {f['area_text']} of the image ({f['area_word']})."]
    parts += [p for p in (count_sentence(f), _intensity(f)) if p]
    if f.get("colour_word"):
        parts.append(f"Its mean colour is {f['colour_word']}.")
    if (les := lesion_sentence(f)):
        parts.append(les)
    if f.get("relation_text"):
        parts.append(f"It {f['relation_text']}.")
    elif f.get("other_labels") == 0 and f.get("other_instances") == 0:
        parts.append(f"No other structure is labelled on this {_unit(f['axis'])}.")
    elif f.get("other_labels") == 0:
        parts.append(f"Apart from other {f['name']} regions, nothing else is labelled on this {_unit(f['axis'])}.")
    return " ".join(parts)


def whole_image_caption(f: dict) -> str:
    return f"{f['modality']} image from {f['dataset_id']} labelled as a whole: {f['name']}."


def image_caption(f: dict) -> str:
    """The global caption of a whole image: modality, plane, size, spacing (when known), recorded metadata and
    every labelled structure of the plane (all windows of a CT plane; names only for named labels)."""
    spacing = f.get("spacing") or []
    mm = f", {spacing[0]:.2f} x {spacing[1]:.2f} mm pixels" if f.get("spacing_known") and len(spacing) == 2 else ""
    side = f"; the viewer's left shows the {f['viewer_left']}" if f.get("viewer_left") else ""
    unit = _unit(f["axis"])
    names = list(f["structures"])
    unnamed = int(f.get("unnamed_structures") or 0)
    if unnamed:
        names.append(f"{unnamed} label{'s' if unnamed > 1 else ''} without a clinical name")
    labelled = f"Labelled on this {unit}: {', '.join(names)}." if names else f"Nothing is labelled on this {unit}."
    return (f"{f['modality']} image ({_plane(f['axis'])}, {f['width']} x {f['height']} px{mm}{side}) "
            f"from {f['dataset_id']}. {f['context_text']} {labelled}")


def prompt_facts(f: dict) -> dict:
    lesion = lesion_sentence(f)
    return {"modality": f["modality"], "plane": _plane(f["axis"]), "name": f["name"],
            "position": f["position_text"], "patient_side": f.get("patient_side") or "not recorded",
            "area_text": f["area_text"], "area_word": f["area_word"],
            "intensity_word": f.get("intensity_word") or "not measured", "colour": f.get("colour_word"),
            "boundary": f.get("boundary_word"), "shape": f.get("shape_word"),
            "count_on_plane": f.get("count_on_plane"), "lesion": lesion, "relations": f.get("relation_text"),
            "context": f.get("context_text")}


def prompt_messages(f: dict) -> list[dict]:
    facts = prompt_facts(f)
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": json.dumps({k: facts[k] for k in PROMPT_FIELDS}, ensure_ascii=False)}]


_SIDE = re.compile(r"patient'?s (left|right)(?! of)\b")
_H = re.compile(r"\b(left-cent(?:re|er)|right-cent(?:re|er)|left|right|cent(?:re|er)|central(?:ly)?) horizontally\b")
_INT = re.compile(r"\b(" + "|".join(re.escape(w) for w in sorted(ALL_INTENSITY_WORDS, key=len, reverse=True)) + r")\b")
_AREA = re.compile(r"\b(" + "|".join(sorted((w for _, w in AREA_BINS), key=len, reverse=True)) + r")\b")
_PCT = re.compile(r"(\d+(?:\.\d+)?)\s*%")
_NUMBERS = {"no": 0, "zero": 0, "one": 1, "single": 1, "solitary": 1, "two": 2, "three": 3, "four": 4, "five": 5,
            "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10, "multiple": -1, "several": -1, "many": -1}
_COUNT = re.compile(r"\b(\d+|" + "|".join(_NUMBERS) + r")\s+(?:separate\s+|distinct\s+|labelled\s+|visible\s+)*"
                    r"(regions?|instances?|cross-sections?|lesions?|parts?|foci|nodules?|polyps?|tumou?rs?|cells?|"
                    r"masses)\b")
_MM = re.compile(r"(\d+(?:\.\d+)?)\s*(mm²|mm2|mm\^2|square millimet(?:re|er)s|mm|millimet(?:re|er)s|cm²|cm2|cm)\b")
_LR_NAME = re.compile(r"\b(left|right)\s+(?:\d+(?:st|nd|rd|th)\s+)?([a-z][a-z -]*)")


def _norm_h(word: str) -> str:
    return word.replace("center", "centre").replace("centrally", "centre").replace("central", "centre")


def _strip(text: str, names: list[str]) -> str:
    for s in sorted({n.lower() for n in names if isinstance(n, str) and n}, key=len, reverse=True):
        text = text.replace(s, " ")
    return text


def _side_issues(low: str, body: str, f: dict) -> list[str]:
    issues = []
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
    lat, canon = f.get("laterality"), (f.get("label") or "").lower()
    if canon:  # the structure's own side: "the right kidney" said of the left one
        for word, rest in _LR_NAME.findall(_strip(low, [f.get("name")] + list(f.get("relation_labels") or []))):
            if rest.startswith(canon) and word != lat:
                issues.append(f"contradicting laterality: {word} {canon} (fact: {lat or 'no side'})")
    h_fact = f["position_text"].split(" horizontally")[0]
    h_said = {_norm_h(w) for w in _H.findall(body)}
    if h_said - {h_fact}:
        issues.append(f"contradicting horizontal position: {', '.join(sorted(h_said - {h_fact}))} (fact: {h_fact})")
    if not fact_lr and f["position_text"] not in low and h_fact not in h_said:
        issues.append(f"position '{f['position_text']}' missing")
    return issues


def _count_issues(body: str, f: dict) -> list[str]:
    n = f.get("count_on_plane")
    issues = []
    for word, noun in _COUNT.findall(body):
        said = int(word) if word.isdigit() else _NUMBERS[word]
        if n is None:
            issues.append(f"count '{word} {noun}' stated for a label not marked exhaustive")
        elif said != n and not (said == -1 and n > 1):
            issues.append(f"contradicting count: {word} {noun} (fact: {n})")
    return issues


def _size_issues(body: str, f: dict, rel: float = 0.1) -> list[str]:
    issues = []
    for value, unit in _MM.findall(body):
        v = float(value)
        area = unit.startswith(("mm²", "mm2", "mm^", "square", "cm²", "cm2"))
        v = v * (100.0 if unit.startswith(("cm²", "cm2")) else 10.0 if unit == "cm" else 1.0)
        fact = f.get("area_mm2") if area else f.get("diameter_mm")
        if fact is None:
            issues.append(f"size '{value} {unit}' stated without a known pixel spacing")
        elif abs(v - fact) > max(rel * fact, 0.5):
            issues.append(f"contradicting size: {value} {unit} (fact: {fact:.1f} {'mm²' if area else 'mm'})")
    return issues


def fact_check(text: str, f: dict, tolerance_pp: float = 0.5) -> list[str]:
    """Problems of ``text`` against the facts (empty list: it passes)."""
    low = text.lower()
    issues = []
    name = (f.get("name") or f["label"]).lower()
    if name not in low:
        issues.append(f"name '{name}' missing")
    body = _strip(low, [name] + list(f.get("relation_labels") or []) + [f.get("container"),
                                                                      f.get("container_position")])
    issues += _side_issues(low, body, f)
    if f.get("intensity_word"):
        said = set(_INT.findall(body))
        if f["intensity_word"] not in said:
            issues.append(f"intensity '{f['intensity_word']}' missing")
        if said - {f["intensity_word"]}:
            issues.append(f"contradicting intensity: {', '.join(sorted(said - {f['intensity_word']}))}")
    area_words = set(_AREA.findall(body))
    if f["area_word"] not in area_words and f["area_text"].lower() not in body:
        issues.append(f"area ('{f['area_word']}' or {f['area_text']}) missing")
    if area_words - {f["area_word"]}:
        issues.append(f"contradicting area word: {', '.join(sorted(area_words - {f['area_word']}))}")
    pcts = [float(p) for p in _PCT.findall(body)]
    allowed = [100 * f["area_ratio"]] + ([100 * f["container_ratio"]] if f.get("container_ratio") is not None else [])
    bad = [p for p in pcts if not any(abs(p - a) <= tolerance_pp for a in allowed)]
    if bad:
        issues.append(f"contradicting area: {bad} vs {100 * f['area_ratio']:.1f}%")
    counted = _strip(low, list(f.get("relation_labels") or []))  # the ROI's own name stays: "3 tumours"
    return issues + _count_issues(counted, f) + _size_issues(body, f)
