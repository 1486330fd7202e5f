"""Stems and options of generated items, for the selected units only (seeded per unit)."""

from __future__ import annotations

import json
from functools import lru_cache

import numpy as np
import yaml

from pipelines.candidates.generators.bins import bin_text, window
from pipelines.candidates.generators.measure import ladder_for
from pipelines.config import PROJECT_ROOT, GeneratorSettings
from pipelines.ids import stable_id

STEMS_PATH = PROJECT_ROOT / "templates" / "geometry.yaml"


@lru_cache(maxsize=4)
def stems(path: str = str(STEMS_PATH)) -> dict:
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _variant(params: dict) -> str:
    gen = params["generator"]
    if gen == "relative_position":
        return params["frame"]
    if gen == "laterality":
        return "side"
    if gen == "measurement":
        return params["quantity"]
    if gen == "instance_count":
        return params.get("dim_kind", "volume")
    if gen == "localisation":
        return "boxes"
    if gen == "coarse_position":
        return params["kind"]
    if gen == "grounding":
        return "box"
    return params["mode"]


def letter_list(n: int) -> str:
    """'A, B and C' for three boxes."""
    letters = list("ABCDE"[:n])
    return ", ".join(letters[:-1]) + " and " + letters[-1] if n > 1 else letters[0]


def pixel_text(mm: float | None) -> str:
    """The displayed pixel size as a stem states it, to three significant digits (two decimals from 1 mm up): a
    reader computing a size from it is off by at most 0.5 %, and 0.004 mm does not read 0.00."""
    if mm is None:
        return ""
    return f"{mm:.2f}" if mm >= 1 else f"{mm:.3g}"


def stem(params: dict, rng: np.random.Generator) -> tuple[str, str]:
    """(template id, text with placeholders still to fill: <modality>, <target>) of one unit."""
    s = stems()
    gen, variant = params["generator"], _variant(params)
    texts = s[gen][variant]
    i = int(rng.integers(len(texts)))
    colours = [m["colour"] for m in params.get("marks", [])]
    values = {"n": len(colours), "a": colours[0] if colours else "", "b": colours[1] if len(colours) > 1 else "",
              "px": pixel_text(params.get("display_mm_per_px")),
              "frame": s["frames"].get(params.get("frame", ""), ""),
              "convention": s["convention"].format(side=params.get("viewer_left_is", "")),
              "structure": params.get("structure", ""), "article": params.get("article", "the")}
    if gen == "localisation":
        values.update(n=params["n_boxes"], letters=letter_list(params["n_boxes"]))
    return stable_id("geometry", gen, variant, i, texts[i]), texts[i].format(**values).strip()


def options(params: dict, answers: list[str], rng: np.random.Generator, g: GeneratorSettings) -> list[str]:
    """The key first, then the distractors (all certainly wrong by construction)."""
    gen = params["generator"]
    if gen == "size_compare":
        key = answers[0]
        others = [m["colour"].capitalize() for m in params["marks"] if m["colour"].capitalize() != key]
        return [key] + [others[i] for i in rng.permutation(len(others))]
    if gen == "laterality":
        return [answers[0], "Right" if answers[0] == "Left" else "Left"]
    if gen == "relative_position":  # the key's kind: the four straight or the four diagonal directions
        k = params["sector"]
        others = [params["directions"][(k + step) % 8] for step in (2, 4, 6)]
        return [answers[0]] + [others[i] for i in rng.permutation(3)]  # no fixed order to point at the key
    if gen == "localisation":  # the boxes' letters; which box is right is placed with the letters
        return [f"Box {c}" for c in "ABCDE"[: params["n_boxes"]]]
    if gen == "coarse_position":
        others = [o for o in params["options"] if o != answers[0]]
        return [answers[0]] + [others[i] for i in rng.permutation(len(others))]
    if gen == "grounding":
        return []
    if gen in ("size_ratio", "measurement"):
        ladder, unit = (list(g.ratio_ladder), "times") if gen == "size_ratio" else ladder_for(params["quantity"], g)
        idx = window(rng, params["bin"], len(ladder) - 1, g.bin_options)
        return [bin_text(i, ladder, unit) for i in idx]
    raise ValueError(f"no options rule for generator {gen!r}")


def count_window(params: dict, count: int, rng: np.random.Generator, g: GeneratorSettings) -> list[str]:
    """Consecutive counts within the structure's observed range, the key first and at a uniform rank."""
    lo, hi = params["range"]
    size = min(g.bin_options, hi - lo + 1)
    return [str(lo + i) for i in window(rng, count - lo, hi - lo + 1, size)]


def flipped(params_json: str, question: str) -> tuple[str, str]:
    """The parameters and stem of a laterality item shown mirrored left to right. The stem's display convention
    becomes the mirrored one, so the patient's side of the outlined structure, and with it the key, is unchanged:
    the pair probes whether a reader follows the stated orientation, not the anatomy."""
    p = json.loads(params_json)
    side = p["viewer_left_is"]
    other = "patient's left" if side == "patient's right" else "patient's right"
    s = stems()
    said, says = s["convention"].format(side=side), s["flipped_convention"].format(side=other)
    if said not in question:
        raise ValueError(f"laterality stem without its display convention: {question!r}")
    p.update(mirrored=True, viewer_left_is=other)
    return json.dumps(p, sort_keys=True), question.replace(said, says)
