"""Gated candidates -> selection -> items for the selected units -> splits -> re-lettering."""

from __future__ import annotations

from collections import Counter

import pandas as pd
import pyarrow as pa

from pipelines.benchmark.select import select_units, unit_frame
from pipelines.benchmark.splits import assign_splits, reletter
from pipelines.config import PipelineConfig
from pipelines.questions.assemble import assemble
from pipelines.records import QA_ITEMS


def passing(candidates: pd.DataFrame, verdicts: pd.DataFrame) -> pd.DataFrame:
    """Candidate rows of the units that passed every readability gate."""
    ok = set(verdicts.loc[verdicts["gate"] == "", "unit_id"])
    return candidates[candidates["unit_id"].isin(ok)]


def build_benchmark(candidates: pd.DataFrame, verdicts: pd.DataFrame, vocab: pd.DataFrame,
                    templates: pd.DataFrame, pools: dict, config: PipelineConfig) -> tuple[pa.Table, dict, Counter]:
    """The benchmark table (image paths still empty: rendering comes after), selection counts, and the
    items that could not be built (by reason)."""
    b = config.benchmark
    ok = passing(candidates, verdicts)
    keep, stats = select_units(unit_frame(ok), b.per_answer_cap, b.near_duplicate_bits, config.seed)
    asm = assemble(ok[ok["unit_id"].isin(keep)], vocab, templates, config, pools)
    selected = asm.table.to_pandas()
    selected["split"] = assign_splits(selected, b.val_fraction, config.seed)
    selected = reletter(selected, config.seed)
    order = selected["split"].map({"val": 0, "test": 1})
    selected = selected.assign(_o=order).sort_values(["_o", "item_id"]).drop(columns="_o")
    selected["index"] = range(len(selected))
    stats.update({"candidates": len(candidates), "gated_out_units": int(candidates["unit_id"].nunique() - ok["unit_id"].nunique()),
                  "items": len(selected), "units": int(selected["unit_id"].nunique()),
                  "val": int((selected["split"] == "val").sum()), "test": int((selected["split"] == "test").sum())})
    table = pa.Table.from_pandas(selected[QA_ITEMS.names].reset_index(drop=True), schema=QA_ITEMS, preserve_index=False)
    return table, stats, asm.skipped
