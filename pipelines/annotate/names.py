"""What an annotation may call a labelled structure: a name only for labels with a clinical meaning, and a
name that keeps what tells two structures apart (the side, the rib number, the vertebral level).

The vocabulary merges 'rib_left_9' and 'rib_right_9' into one canonical label for questions; a sentence
about one plane must not, or "the spine lies to the patient's right of the rib" is said of two ribs at
once. Labels that are excluded (test segments, colour names), unresolved or only accepted as planning
structures get no name: they still count as labelled structures of the plane, but never reach a text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd

from pipelines.vocab.text import form_key, split_side

NAMED_STATUS = frozenset({"mesh", "no_mesh"})
_LEVEL = re.compile(r"^([cClLsStT])(\d{1,2})$")  # vertebral level tokens: C7, T12, L2, S1


@dataclass(frozen=True)
class LabelName:
    """One raw label of a dataset as an annotation names it (``name`` None: never named in a text)."""

    raw_label: str
    canonical: str
    name: str | None
    laterality: str | None
    semantic_type: str | None
    mesh_id: str | None
    task: str | None


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def display_name(raw_label: str, canonical: str, laterality: str | None) -> str:
    """'rib_left_9' + 'rib' + 'left' -> 'left 9th rib'; 'vertebrae_L2' + 'lumbar vertebrae' -> 'lumbar
    vertebrae (L2)'; 'kidney_right' + 'kidney' -> 'right kidney'. A side or number the canonical form already
    carries is not repeated."""
    tokens = raw_label.replace("-", "_").replace(" ", "_").split("_")
    words = form_key(raw_label).split()
    side = laterality if laterality in ("left", "right", "bilateral") else split_side(
        [w for w in words if not w.isdigit()])[1]
    low = f" {canonical.lower()} "
    parts = []
    if side and f" {side} " not in low:
        parts.append(side)
    number = next((int(t) for t in reversed(tokens) if t.isdigit()), None)
    if number is not None and str(number) not in canonical:
        parts.append(ordinal(number))
    parts.append(canonical)
    name = " ".join(parts)
    level = next((m.group(0).upper() for t in tokens if (m := _LEVEL.match(t))), None)
    if level and level.lower() not in low:
        name += f" ({level})"
    return name


def _str(v: object) -> str | None:
    return v if isinstance(v, str) and v else None


def label_names(vocab: pd.DataFrame, dataset_id: str) -> dict[str, LabelName]:
    """{raw label: LabelName} of one dataset from the label_vocab rows."""
    out = {}
    for r in vocab[vocab["dataset_id"] == dataset_id].to_dict("records"):
        canonical = _str(r.get("canonical_label")) or r["raw_label"]
        named = r.get("status") in NAMED_STATUS
        lat = _str(r.get("laterality"))
        out[r["raw_label"]] = LabelName(r["raw_label"], canonical,
                                        display_name(r["raw_label"], canonical, lat) if named else None,
                                        lat, _str(r.get("semantic_type")), _str(r.get("mesh_id")), _str(r.get("task")))
    return out


def unknown(raw_label: str) -> LabelName:
    """A raw label the vocabulary does not hold: never named."""
    return LabelName(raw_label, raw_label, None, None, None, None, None)
