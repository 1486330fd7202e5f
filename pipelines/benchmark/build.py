"""Gated candidates -> selection -> items for the selected units -> splits -> re-lettering."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.benchmark.debias import drop_text_predictable
from pipelines.benchmark.leakage import leak_components
from pipelines.benchmark.select import UNIT_COLUMNS, select_units, unit_frame
from pipelines.benchmark.splits import assign_splits, reletter
from pipelines.benchmark.variants import consistency_pairs, robustness_copies
from pipelines.config import PipelineConfig
from pipelines.questions.assemble import assemble
from pipelines.records import QA_ITEMS

SUBSET_ORDER = {"main": 0, "consistency": 1, "robustness": 2, "grounding": 3}  # export configs; index follows it


def build_benchmark(candidates: Path, verdicts: pd.DataFrame, vocab: pd.DataFrame,
                    templates: pd.DataFrame, pools: dict, config: PipelineConfig,
                    plane_hashes: pd.DataFrame | None = None,
                    rejected: set[str] | None = None) -> tuple[pa.Table, dict, Counter]:
    """The benchmark table (image paths still empty: rendering comes after), selection counts, and the
    items that could not be built (by reason). Only the columns selection needs are read for every
    candidate; whole rows are read for the selected units alone. ``plane_hashes`` (image_id, sha256)
    joins groups that share a pixel-identical plane across registrations and files. Units in ``rejected``
    (reviewers' decisions) are never selected; units the blind baseline answers are dropped after the
    split (:mod:`pipelines.benchmark.debias`); ``stats['text_only_dropped']`` lists them."""
    b = config.benchmark
    passed = pa.array(verdicts.loc[verdicts["gate"] == "", "unit_id"].tolist(), pa.string())
    light = pq.read_table(candidates, columns=UNIT_COLUMNS)
    ok = light.filter(pc.is_in(light["unit_id"], passed)).to_pandas()
    rejected_here = ok["unit_id"].isin(rejected or set())
    n_rejected = int(ok.loc[rejected_here, "unit_id"].nunique())
    ok = ok[~rejected_here]
    keep, stats = select_units(unit_frame(ok), b.per_answer_cap, b.near_duplicate_bits, config.seed, b.balance_floor)
    full = pq.read_table(candidates)
    chosen = full.filter(pc.is_in(full["unit_id"], pa.array(sorted(keep), pa.string()))).to_pandas()
    asm = assemble(chosen, vocab, templates, config, pools)
    selected = asm.table.to_pandas()
    sha = plane_hashes.drop_duplicates("image_id").set_index("image_id")["sha256"] if plane_hashes is not None else None
    phash = chosen.drop_duplicates("item_id").set_index("item_id")["phash"]
    keys = selected.assign(sha256=selected["image_id"].map(sha) if sha is not None else None,
                           phash=selected["item_id"].map(phash))
    selected["split_group"] = leak_components(keys, b.near_duplicate_bits)
    selected["split"] = assign_splits(selected, b.val_fraction, config.seed, by="split_group")
    selected = reletter(selected, config.seed)
    debiased = drop_text_predictable(selected, b, config.seed, reletter)
    selected = debiased.items
    mirrors = consistency_pairs(selected) if config.generators.mirror_pairs else selected.iloc[:0]
    selected = pd.concat([selected, mirrors], ignore_index=True)
    perturbed = robustness_copies(selected, config)
    selected = pd.concat([selected, perturbed], ignore_index=True)
    order = selected["subset"].map(SUBSET_ORDER) * 2 + selected["split"].map({"val": 0, "test": 1})
    selected = selected.assign(_o=order).sort_values(["_o", "item_id"]).drop(columns="_o")
    selected["index"] = range(len(selected))
    stats.update({"candidates": light.num_rows,
                  "gated_out_units": int(pc.count_distinct(light["unit_id"]).as_py() - ok["unit_id"].nunique() - n_rejected),
                  "split_groups": int(selected["split_group"].nunique()),
                  "groups_joined": int(selected["group_id"].nunique() - selected["split_group"].nunique()),
                  "items": len(selected), "units": int(selected["unit_id"].nunique()),
                  "consistency_items": len(mirrors), "robustness_items": len(perturbed),
                  "val": int(((selected["split"] == "val") & (selected["subset"] == "main")).sum()),
                  "test": int(((selected["split"] == "test") & (selected["subset"] == "main")).sum()),
                  "review_rejected_units": n_rejected,
                  "text_only_dropped_units": len(debiased.dropped), "text_only_rounds": debiased.rounds,
                  "text_only_accuracy_before": round(float(debiased.before.get("accuracy", 0.0)), 4),
                  "text_only_exceeds_before": ", ".join(debiased.before.get("exceeds", [])) or "-",
                  "text_only_dropped_by_dataset": debiased.dropped_by_dataset, "text_only_dropped": debiased.dropped})
    table = pa.Table.from_pandas(selected[QA_ITEMS.names].reset_index(drop=True), schema=QA_ITEMS, preserve_index=False)
    return table, stats, asm.skipped
