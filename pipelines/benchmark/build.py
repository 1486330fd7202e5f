"""Selection + splits + re-lettering: qa_candidates -> benchmark."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa

from pipelines.benchmark.select import build_units, select_units
from pipelines.benchmark.splits import assign_splits, reletter
from pipelines.config import PipelineConfig
from pipelines.records import QA_ITEMS


def build_benchmark(candidates: pd.DataFrame, slices: pd.DataFrame, data_root: Path,
                    config: PipelineConfig) -> tuple[pa.Table, dict]:
    b = config.benchmark
    units = build_units(candidates, slices, data_root)
    keep, stats = select_units(candidates, units, b.per_answer_cap, b.near_duplicate_bits, config.seed)
    selected = candidates[candidates["unit_id"].isin(keep)].copy()
    selected["split"] = assign_splits(selected, b.val_fraction, config.seed)
    selected = reletter(selected, config.seed)
    selected = selected.sort_values(["split", "item_id"], key=lambda s: s.map({"val": 0, "test": 1}) if s.name == "split" else s)
    selected["index"] = range(len(selected))
    stats.update({"candidates": len(candidates), "items": len(selected), "units": len(keep),
                  "val": int((selected["split"] == "val").sum()), "test": int((selected["split"] == "test").sum())})
    return pa.Table.from_pandas(selected[QA_ITEMS.names].reset_index(drop=True), schema=QA_ITEMS, preserve_index=False), stats
