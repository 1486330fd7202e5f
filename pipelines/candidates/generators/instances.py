"""Instance counting: how many separate cross-sections of a structure a plane shows, from exhaustive masks
(every instance drawn; the label map says which labels are). Counts are the 2D connected pieces of the union
of every raw label that maps to the structure (pieces.py); a plane where any piece is below the visibility gate
is left out (its count would depend on pixels a reader cannot see), so is a plane where two pieces lie closer than
``questions.count_gap_px`` (or ``count_gap_fraction`` of the shorter side) or a piece comes that close to the image
border (touching pieces, or one cut by the border, leave the count to conventions a reader cannot see), and so is a
plane where the describe step
dropped a cross-section of the structure below the region floor (`slices.faint_labels`: a speck the rows do
not hold but the image shows). Zero counts come from planes inside the
structure's extent along the same axis of the same scan where it is absent. Options are consecutive counts
inside the range this structure takes in the dataset, with the key at a uniform rank: an option the structure
never takes (3 kidneys) would be eliminated without looking."""

from __future__ import annotations

import pandas as pd

from pipelines.candidates.generators.pieces import PlaneFacts
from pipelines.candidates.generators.spec import Spec
from pipelines.config import PipelineConfig

TASK = "Instance Counting"


def count_table(facts: PlaneFacts, regions: pd.DataFrame, slices: pd.DataFrame, planes: pd.DataFrame,
                vocab: pd.DataFrame,
                exhaustive: frozenset[str], sampled: list[str], config: PipelineConfig, skipped) -> pd.DataFrame:
    """(image_id, canonical, count, region ids, tags, raw labels, observed range) of the countable sampled planes."""
    cols = ["image_id", "canonical_label", "count", "region_ids", "department", "semantic_type", "raw_labels"]
    v = vocab[vocab["status"].isin(["mesh", "no_mesh", "accepted"]) & vocab["department"].notna()
              & (vocab["department"] != "N/A") & vocab["raw_label"].isin(exhaustive)]
    tags = v.groupby("canonical_label").agg(department=("department", "first"), semantic_type=("semantic_type", "first"),
                                            raw_labels=("raw_label", lambda s: sorted(set(s))))
    m = regions[(regions["kind"] == "mask") & regions["raw_label"].isin(set(v["raw_label"]))]
    m = m.assign(canonical_label=m["raw_label"].map(dict(zip(v["raw_label"], v["canonical_label"]))))
    if m.empty:
        return pd.DataFrame(columns=cols + ["lo", "hi"])
    seen = [(i, c, n, rids) for (i, c), (n, hidden, rids, close) in facts.counts.items()
            if not hidden and not close and c in tags.index]
    hidden = sum(1 for (_, h, _, _) in facts.counts.values() if h)
    if hidden:
        skipped["count_hidden_instance"] += hidden
    close = sum(1 for (_, h, _, c) in facts.counts.values() if c and not h)
    if close:
        skipped["count_pieces_touch"] += close
    per = pd.DataFrame(seen, columns=["image_id", "canonical_label", "count", "region_ids"])
    # zeros: sampled planes of the same scan and axis inside the structure's extent where none of it is drawn
    m = m.merge(planes[["image_id", "sample_id", "axis", "index", "window"]], on="image_id")
    ext = m.groupby(["sample_id", "axis", "window", "canonical_label"]).agg(lo=("index", "min"), hi=("index", "max"))
    # a plane is asked about in the window the structure is shown in (a bone window for ribs, not a lung one)
    zeros = planes[planes["image_id"].isin(sampled)].merge(ext.reset_index(), on=["sample_id", "axis", "window"])
    zeros = zeros[(zeros["index"] > zeros["lo"]) & (zeros["index"] < zeros["hi"])]
    have = set(zip(m["image_id"].tolist(), m["canonical_label"].tolist()))
    absent = pd.Series([(i, c) not in have for i, c in zip(zeros["image_id"].tolist(), zeros["canonical_label"].tolist())],
                       index=zeros.index, dtype=bool)
    zeros = zeros[absent]
    zeros = zeros.assign(count=0, region_ids=[[] for _ in range(len(zeros))])
    out = pd.concat([per, zeros[per.columns]], ignore_index=True).join(tags, on="canonical_label")[cols]
    # a cross-section below the region floor is not in the rows but is still a speck on the image: ambiguous
    faint = dict(zip(slices["image_id"].tolist(), slices["faint_labels"].tolist())) if "faint_labels" in slices else {}
    specks = pd.Series([bool(set(faint.get(i) if faint.get(i) is not None else ()) & set(raw))
                        for i, raw in zip(out["image_id"].tolist(), out["raw_labels"].tolist())], index=out.index, dtype=bool)
    if specks.any():
        skipped["count_faint_piece"] += int(specks.sum())
    out = out[~specks]
    out["lo"] = out.groupby("canonical_label")["count"].transform("min")
    out["hi"] = out.groupby("canonical_label")["count"].transform("max")
    keys = out.groupby("canonical_label")["count"].transform("nunique")
    narrow = keys < config.questions.min_count_keys
    if narrow.any():
        skipped["narrow_count_range"] += int(narrow.sum())
    return out[~narrow].sort_values(["image_id", "canonical_label"]).reset_index(drop=True)


def specs(table: pd.DataFrame) -> list[Spec]:
    return [Spec("instance_count", TASK, r.image_id, [], [], [str(int(r.count))], None, r.department, r.semantic_type,
                 {"structure": r.canonical_label, "raw_labels": list(r.raw_labels), "region_ids": list(r.region_ids),
                  "range": [int(r.lo), int(r.hi)]},
                 count=int(r.count),
                 count_label=r.canonical_label, labels=list(r.raw_labels), balance_group=f"count:{r.canonical_label}")
            for r in table.itertuples(index=False)]
