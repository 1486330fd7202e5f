"""The lexical tree (task/department/granularity -> modality -> labels, with counts) and tag-based selection."""

from __future__ import annotations

import html
import json
from collections.abc import Iterable

import pandas as pd

from pipelines.records import LETTERS

# tag name -> column of the benchmark table (the vocabulary table uses the short names)
TAG_COLUMNS = {"task": "clinical_vqa_task", "department": "department", "modality": "modality",
               "granularity": "perceptual_granularity"}


def _column(df: pd.DataFrame, tag: str) -> str:
    for name in (TAG_COLUMNS[tag], tag):
        if name in df.columns:
            return name
    raise KeyError(f"table has no column for tag {tag!r} (expected {TAG_COLUMNS[tag]!r} or {tag!r})")


def lexical_tree(df: pd.DataFrame, label: str = "answer_label", weight: str | None = None) -> dict:
    """{'task'|'department'|'granularity': {value: {modality: {label: count}}}} with sorted keys."""
    rows = df.copy()
    if "granularities" in rows.columns and "perceptual_granularity" not in rows.columns:
        rows = rows.explode("granularities").rename(columns={"granularities": "granularity"})
    w = rows[weight] if weight else pd.Series(1, index=rows.index)
    tree: dict = {}
    for tag in ("task", "department", "granularity"):
        col = _column(rows, tag)
        mod = _column(rows, "modality")
        counts = (rows.assign(_w=w).dropna(subset=[col]).groupby([col, mod, label])["_w"].sum())
        branch: dict = {}
        for (value, modality, lab), n in counts.items():
            branch.setdefault(value, {}).setdefault(modality, {})[lab] = int(n)
        tree[tag] = {k: dict(sorted(v.items())) for k, v in sorted(branch.items())}
    return tree


def offered_options(items: pd.DataFrame) -> pd.DataFrame:
    """One row per (item, option text offered), tags kept: the items' options as the lexical tree's labels."""
    letters = [c for c in LETTERS if c in items]
    rows = items.melt(id_vars=[c for c in items.columns if c not in letters], value_vars=letters,
                      value_name="option").dropna(subset=["option"])
    return rows.drop(columns="variable")


def tree_json(tree: dict) -> bytes:
    return (json.dumps(tree, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def tree_html(tree: dict, title: str) -> bytes:
    """A static page: nested <details> per tag value and modality; no scripts, opens from disk."""
    esc = html.escape
    parts = [f"<!doctype html><meta charset='utf-8'><title>{esc(title)}</title>",
             "<style>body{font:14px sans-serif;margin:2em}details{margin-left:1.2em}"
             "summary{cursor:pointer}.n{color:#777}</style>", f"<h1>{esc(title)}</h1>"]
    for tag, branch in tree.items():
        total = sum(n for mods in branch.values() for labs in mods.values() for n in labs.values())
        parts.append(f"<h2>by {esc(tag)} <span class=n>({total})</span></h2>")
        for value, mods in branch.items():
            n_value = sum(n for labs in mods.values() for n in labs.values())
            parts.append(f"<details><summary>{esc(str(value))} <span class=n>({n_value})</span></summary>")
            for modality, labels in mods.items():
                parts.append(f"<details><summary>{esc(str(modality))} <span class=n>({sum(labels.values())})</span>"
                             "</summary><ul>")
                parts += [f"<li>{esc(str(lab))} <span class=n>{n}</span></li>" for lab, n in labels.items()]
                parts.append("</ul></details>")
            parts.append("</details>")
    return "\n".join(parts).encode("utf-8")


def select(df: pd.DataFrame, *, task: Iterable[str] = (), department: Iterable[str] = (),
           modality: Iterable[str] = (), granularity: Iterable[str] = ()) -> pd.DataFrame:
    """Rows matching every given tag (any of the values given for one tag): a sub-benchmark."""
    mask = pd.Series(True, index=df.index)
    for tag, values in (("task", task), ("department", department), ("modality", modality),
                        ("granularity", granularity)):
        values = list(values)
        if values:
            mask &= df[_column(df, tag)].isin(values)
    return df[mask]
