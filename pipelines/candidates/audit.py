"""Item-level checks shared by qa_candidates and the benchmark audit."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pandas as pd

from pipelines.candidates.validate import rendering_conflicts
from pipelines.records import LETTERS
from pipelines.vocab.text import form_key


@dataclass
class Outcome:
    name: str
    passed: bool
    warn_only: bool = False
    metadata: dict = field(default_factory=dict)


def options_of(row) -> list[str]:
    return [row[c] for c in LETTERS if isinstance(row[c], str)]


def letter_distribution(df: pd.DataFrame) -> pd.DataFrame:
    """Share of each correct letter per option count, over units (twins count once), single-answer only."""
    single = df[~df["multi_answer"]].drop_duplicates("unit_id")
    rows = []
    for k, group in single.groupby("n_options"):
        counts = Counter(group["answer"])
        for letter in LETTERS[:k]:
            share = counts.get(letter, 0) / len(group)
            rows.append({"n_options": int(k), "letter": letter, "units": len(group), "count": counts.get(letter, 0),
                         "share": share, "deviation_pp": 100 * (share - 1 / k)})
    return pd.DataFrame(rows, columns=["n_options", "letter", "units", "count", "share", "deviation_pp"])


def _md(df: pd.DataFrame) -> str:
    if df.empty:
        return "-"
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in df.itertuples(index=False):
        lines.append("| " + " | ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in r) + " |")
    return "\n".join(lines)


def item_checks(df: pd.DataFrame, skipped: Counter | None = None, tolerance_pp: float = 3.0) -> list[Outcome]:
    skipped = skipped or Counter()
    dup, among, in_stem, cue = [], [], [], []
    read = [c for c in ("item_id", "answer", "question", "granularity", *LETTERS) if c in df]
    for row in df[read].to_dict("records"):  # the columns read: a record of every column took 5x as long
        opts = options_of(row)
        keys = [form_key(o) for o in opts]
        if len(set(keys)) != len(keys):
            dup.append(row["item_id"])
        answer_letters = row["answer"].split(",")
        correct = {form_key(row[a]) for a in answer_letters}
        wrong = [form_key(row[c]) for c in LETTERS[: len(opts)] if c not in answer_letters]
        if correct & set(wrong):
            among.append(row["item_id"])
        if rendering_conflicts(row["question"], row.get("granularity", "")):
            cue.append(row["item_id"])
        stem = f" {form_key(row['question'])} "
        named = {k for k in keys if len(k) > 2 and not k.isdigit() and f" {k} " in stem}
        if named and named != set(keys):  # naming every option ('left or right') gives none away
            in_stem.append(row["item_id"])
    small = int(skipped.get("pool_too_small", 0)) + int((df["pool_size"].fillna(2) < 2).sum())
    dist = letter_distribution(df)
    # one unit more or less cannot be avoided in a small group: allow that quantum beyond the tolerance
    if not dist.empty:
        dist["allowed_pp"] = [max(tolerance_pp, 100.0 / u) for u in dist["units"]]
        dist["flagged"] = dist["deviation_pp"].abs() > dist["allowed_pp"]
    worst = float(dist["deviation_pp"].abs().max()) if not dist.empty else 0.0
    flagged = int(dist["flagged"].sum()) if not dist.empty else 0
    return [
        Outcome("pool_too_small", small == 0, True, {"items_skipped": small}),
        Outcome("duplicate_options", not dup, False, {"items": len(dup), "examples": ", ".join(dup[:10]) or "-"}),
        Outcome("answer_among_distractors", not among, False, {"items": len(among), "examples": ", ".join(among[:10]) or "-"}),
        Outcome("letter_balance", flagged == 0, True,
                {"max_deviation_pp": round(worst, 2), "flagged_letters": flagged, "distribution": _md(dist)}),
        Outcome("stem_contains_option", not in_stem, False, {"items": len(in_stem), "examples": ", ".join(in_stem[:10]) or "-"}),
        Outcome("cue_matches_rendering", not cue, False, {"items": len(cue), "examples": ", ".join(cue[:10]) or "-"}),
    ]
