"""Gated candidates -> one identity per source -> selection per dataset -> items -> key balance -> splits ->
blind drops -> consistency, robustness and grounding copies.

Every step that decides which units stay works per dataset with seeds derived from the dataset id, so adding or
removing a dataset changes another dataset's items only where a cross-dataset rule binds (the cap of units per
answer, task-wide key balance, the cross-dataset blind pass, a duplicate registration); ``fates`` says which rule
dropped each unit, for the changelog.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.candidates.assemble import assemble
from pipelines.config import PipelineConfig
from pipelines.records import QA_ITEMS
from pipelines.select.dedupe import duplicate_pairs, duplicate_planes
from pipelines.select.splits import assign_splits, reletter
from pipelines.select.units import UNIT_COLUMNS, cap_per_component, select_per_dataset, unit_frame
from pipelines.select.variants import consistency_pairs, robustness_copies
from pipelines.validity.balance import balance_keys, balance_tasks
from pipelines.validity.debias import drop_text_predictable
from pipelines.validity.leakage import leak_components

SUBSET_ORDER = {"main": 0, "consistency": 1, "robustness": 2, "grounding": 3}  # export configs; index follows it


@dataclass
class Built:
    table: pa.Table
    stats: dict
    skipped: Counter
    fates: dict[str, str] = field(default_factory=dict)  # unit id -> the rule that dropped it after gating
    duplicates: list[tuple[str, str, float]] = field(default_factory=list)  # registrations reading the same images


def build_benchmark(candidates: Path, verdicts: pd.DataFrame, vocab: pd.DataFrame,
                    templates: pd.DataFrame, pools: dict, config: PipelineConfig,
                    planes: pd.DataFrame | None = None, rejected: set[str] | None = None) -> Built:
    """The benchmark table (image paths still empty: rendering comes after), selection counts, the items that
    could not be built (by reason) and each dropped unit's fate. Only the columns selection needs are read for
    every candidate; whole rows are read for the selected units alone. ``planes`` (image_id, dataset_id, sha256,
    phash of every described plane) finds registrations that read the same images and joins groups that share a
    plane. Units in ``rejected`` (reviewers' decisions) are never selected."""
    b, seed = config.benchmark, config.seed
    fates: dict[str, str] = {}
    reader = ThreadPoolExecutor(1)  # the whole rows are read (Arrow, without the GIL) while the units are chosen
    whole = reader.submit(pq.read_table, candidates)
    reader.shutdown(wait=False)  # the read goes on; taken below
    passed = pa.array(verdicts.loc[verdicts["gate"] == "", "unit_id"].tolist(), pa.string())
    light = pq.read_table(candidates, columns=[*UNIT_COLUMNS, "image_id"])
    ok = light.filter(pc.is_in(light["unit_id"], passed)).to_pandas()
    rejected_here = ok["unit_id"].isin(rejected or set())
    n_rejected = int(ok.loc[rejected_here, "unit_id"].nunique())  # units, not their (mask and contour) items
    fates.update(dict.fromkeys(ok.loc[rejected_here, "unit_id"], "review_rejected"))
    ok = ok[~rejected_here]
    pairs: list = []
    if planes is not None and not planes.empty:
        pairs = duplicate_pairs(planes)
        held = duplicate_planes(planes, b.near_duplicate_bits)
        dup = ok["image_id"].isin(held)
        fates.update({u: f"duplicate_registration:{held[i]}" for u, i in zip(ok.loc[dup, "unit_id"], ok.loc[dup, "image_id"])})
        ok = ok[~dup]
    keep, stats, capped = select_per_dataset(unit_frame(ok), b.per_answer_cap, b.near_duplicate_bits, seed,
                                             b.balance_floor)
    fates.update(capped)
    kept = ok[ok["unit_id"].isin(keep)]
    sha = _plane_sha(planes)
    crowded = cap_per_component(kept.assign(sha256=kept["image_id"].map(sha) if sha is not None else None),
                                b.per_component_task_cap, b.near_duplicate_bits, seed)
    fates.update(crowded)
    keep -= set(crowded)
    stats["component_task_capped"] = len(crowded)
    full = whole.result()
    chosen = full.filter(pc.is_in(full["unit_id"], pa.array(sorted(keep), pa.string()))).to_pandas()
    asm = assemble(chosen, vocab, templates, config, pools)
    selected = asm.table.to_pandas()
    boxed = selected["generator"] == "grounding"  # answered by a box: their own config, no letters or key priors
    ground, selected = selected[boxed], selected[~boxed]
    # per dataset, letters placed again after; then across datasets, without re-lettering (keys stay)
    balanced = balance_keys(selected, b.key_balance_margin, seed, b.key_balance_min_units)
    selected = reletter(selected[~selected["unit_id"].isin(balanced)].reset_index(drop=True), seed)
    across = balance_tasks(selected, b.key_balance_margin, seed, b.key_balance_min_units)
    balanced.update(across)
    fates.update(balanced)
    selected = selected[~selected["unit_id"].isin(across)].reset_index(drop=True)
    both = _split(pd.concat([selected, ground], ignore_index=True), chosen, sha, config)
    ground = both[both["generator"] == "grounding"].assign(subset="grounding")
    selected = both[both["generator"] != "grounding"].reset_index(drop=True)
    debiased = drop_text_predictable(selected, b, seed, reletter)
    fates.update({u: "text_only_dataset" for u in debiased.dropped if u not in set(debiased.global_dropped)})
    fates.update(dict.fromkeys(debiased.global_dropped, "text_only_global"))
    selected = debiased.items
    pairs_ = consistency_pairs(selected) if config.generators.mirror_pairs else selected.iloc[:0]
    perturbed = robustness_copies(selected, config)
    selected = pd.concat([selected, pairs_, perturbed, ground], ignore_index=True)
    selected["department"] = public_departments(selected)
    order = (selected["subset"].map(SUBSET_ORDER).to_numpy(float) * 2
             + selected["split"].map({"val": 0, "test": 1}).to_numpy(float))
    selected = selected.assign(_o=order).sort_values(["_o", "item_id"]).drop(columns="_o")
    selected["index"] = range(len(selected))
    main = selected[selected["subset"] == "main"]
    stats.update({"candidates": light.num_rows,
                  "gated_out_units": int(pc.count_distinct(light["unit_id"]).as_py() - len(passed)),
                  "duplicate_registration_units": sum(1 for v in fates.values() if v.startswith("duplicate_")),
                  "key_balance_dropped_units": sum(1 for v in balanced.values() if v != "constant_key"),
                  "constant_key_dropped_units": sum(1 for v in balanced.values() if v == "constant_key"),
                  "split_groups": int(main["split_group"].nunique()),
                  "groups_joined": int(main["group_id"].nunique() - main["split_group"].nunique()),
                  "items": len(selected), "units": int(selected["unit_id"].nunique()),
                  "consistency_items": len(pairs_), "robustness_items": len(perturbed), "grounding_items": len(ground),
                  "val": int((main["split"] == "val").sum()), "test": int((main["split"] == "test").sum()),
                  "val_share": round(float((main["split"] == "val").mean()), 4) if len(main) else 0.0,
                  "review_rejected_units": n_rejected,
                  "text_only_dropped_units": len(debiased.dropped), "text_only_rounds": debiased.rounds,
                  "text_only_accuracy_before": round(float(debiased.before.get("accuracy", 0.0)), 4),
                  "text_only_exceeds_before": ", ".join(debiased.before.get("exceeds", [])) or "-",
                  "text_only_dropped_by_dataset": debiased.dropped_by_dataset, "text_only_dropped": debiased.dropped})
    ds_of = dict(zip(light["unit_id"].to_pylist(), light["dataset_id"].to_pylist()))
    by_ds: dict[str, Counter] = {}
    for unit, why in fates.items():
        by_ds.setdefault(ds_of.get(unit, "?"), Counter())[why.split(":")[0]] += 1
    stats["dropped_by_dataset"] = {ds: dict(sorted(c.items())) for ds, c in sorted(by_ds.items())}
    table = pa.Table.from_pandas(selected[QA_ITEMS.names].reset_index(drop=True), schema=QA_ITEMS, preserve_index=False)
    return Built(table, stats, asm.skipped, fates, pairs)


def public_departments(items: pd.DataFrame) -> pd.Series:
    """The department an item is tagged with: the most frequent department of its dataset and task (ties by name).
    A department taken from the answer's own label (liver: hepatology, kidney: nephrology) would name the key."""
    if items.empty:
        return items["department"]
    counts = items.groupby(["dataset_id", "clinical_vqa_task", "department"], dropna=False).size().reset_index(name="n")
    counts = counts.sort_values(["dataset_id", "clinical_vqa_task", "n", "department"], ascending=[True, True, False, True])
    mode = counts.drop_duplicates(["dataset_id", "clinical_vqa_task"]).set_index(["dataset_id", "clinical_vqa_task"])
    key = pd.MultiIndex.from_arrays([items["dataset_id"], items["clinical_vqa_task"]])
    return pd.Series(mode["department"].reindex(key).to_numpy(), index=items.index, dtype=object)


def _plane_sha(planes: pd.DataFrame | None) -> pd.Series | None:
    """Each described plane's pixel hash by image id (None without planes)."""
    return planes.drop_duplicates("image_id").set_index("image_id")["sha256"] if planes is not None and len(planes) else None


def _split(selected: pd.DataFrame, chosen: pd.DataFrame, sha: pd.Series | None,
           config: PipelineConfig) -> pd.DataFrame:
    """Leakage components (groups joined by a shared plane or a near-identical image) and the val/test split."""
    b = config.benchmark
    if selected.empty:
        return selected.assign(split_group=pd.Series(dtype=object), split=pd.Series(dtype=object))
    phash = chosen.drop_duplicates("item_id").set_index("item_id")["phash"]
    keys = selected.assign(sha256=selected["image_id"].map(sha) if sha is not None else None,
                           phash=selected["item_id"].map(phash))
    selected = selected.assign(split_group=leak_components(keys, b.near_duplicate_bits))
    selected["split"] = assign_splits(selected, b.val_fraction, config.seed, by="split_group",
                                      share_range=b.val_share_range, cover_min_items=b.val_cover_min_items)
    return selected
