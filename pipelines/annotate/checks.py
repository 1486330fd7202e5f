"""Checks of the annotation rows against what the labels support: names only for named labels, counts only
for exhaustive ones. They read the structured fields the captions are written from."""

from __future__ import annotations

import pandas as pd

from pipelines.annotate.names import label_names


def _names_of(row: dict) -> list[str]:
    """Every structure name a row's text is written from (a whole-image label list split into its names)."""
    out = (row["name"] or "").split("; ") if row["scope"] == "roi" else []
    if row.get("container_source") == "label":
        out.append(row["container"].removeprefix("the "))
    for col in ("structures", "diagnosis"):
        out += list(row[col]) if row[col] is not None else []
    out += [e["structure"] for e in (row["relations"] if row["relations"] is not None else [])]
    return [n for n in out if n]


def unnamed_names(ann: pd.DataFrame, vocab: pd.DataFrame) -> pd.DataFrame:
    """Rows whose structured fields name a structure that is not the name of a named label of its dataset
    (an excluded, unresolved or accepted label, a colour name): annotation_id and the offending name."""
    bad = []
    for ds, part in ann.groupby("dataset_id"):
        allowed = {n.name for n in label_names(vocab, ds).values() if n.name}
        bad += [{"annotation_id": row["annotation_id"], "name": n} for row in part.to_dict("records")
                for n in _names_of(row) if n not in allowed]
    return pd.DataFrame(bad, columns=["annotation_id", "name"])


def counts_without_exhaustive(ann: pd.DataFrame) -> pd.DataFrame:
    """ROI rows stating a count (or a multiplicity) for a label the label map does not mark exhaustive."""
    roi = ann[ann["scope"] == "roi"]
    stated = roi["count_on_plane"].notna() | roi["multiplicity"].notna()
    return roi[stated & (roi["exhaustive"] != True)][["annotation_id", "dataset_id", "raw_label"]]  # noqa: E712
