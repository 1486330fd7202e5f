"""candidate_gates: the readability rules, applied to candidates before selection (one check per rule)."""

import dagster as dg
import pyarrow as pa

from assets.ingest import markdown_counts
from assets.resources import MedbenchResource
from pipelines.gates import RULES, apply_gates, below_gate_datasets
from pipelines.storage import atomic_write_table


def opt_outs(medbench: MedbenchResource) -> dict[str, list[str]]:
    """Registry entries' explicit exemptions from gate rules."""
    return {ds: list(medbench.sources.get(ds).entry.readability_opt_out) for ds in medbench.sources.ids}


@dg.asset(
    group_name="gates", deps=["qa_candidates"],
    check_specs=[dg.AssetCheckSpec(f"gate_{r.name}", asset="candidate_gates",
                                   description=f"units dropped because: {r.explains} (warns when a dataset "
                                               "loses most of its units to this rule)") for r in RULES],
    description="Readability verdict per candidate unit (display size, aspect, blank image, mark size/edge); "
                "drops counted per rule and dataset.")
def candidate_gates(context: dg.AssetExecutionContext, medbench: MedbenchResource):
    cfg, layout = medbench.config, medbench.layout
    cols = ["unit_id", "granularity", "dataset_id", "image_width", "image_height", "contrast", "mark_pixels",
            "mark_fraction", "mark_min_side", "border_only", "source_path", "pipeline_version", "seed"]
    cands = layout.read("qa_candidates", columns=cols).to_pandas()
    res = apply_gates(cands, cfg.gates, opt_outs(medbench))
    path = atomic_write_table(res.verdicts, layout.table("gate_verdicts"))
    atomic_write_table(pa.Table.from_pandas(res.drops, preserve_index=False), layout.table("gate_drops"))
    gate = res.verdicts.column("gate").to_pylist()
    by_rule = {r: n for r, n in res.drops.groupby("rule")["dropped"].sum().items() if n}
    checks = []
    mostly = below_gate_datasets(res.drops, cfg.gates.majority_warn)
    for rule in RULES:
        part = res.drops[res.drops["rule"] == rule.name]
        share = {r.dataset_id: round(r.dropped / r.units, 3) for r in part.itertuples() if r.units and r.dropped}
        heavy = {d: rules[rule.name] for d, rules in mostly.items() if rule.name in rules}
        checks.append(dg.AssetCheckResult(
            check_name=f"gate_{rule.name}", passed=not heavy, severity=dg.AssetCheckSeverity.WARN,
            metadata={"dropped_units": int(part["dropped"].sum()),
                      "share_dropped_by_dataset": dg.MetadataValue.json(share),
                      "datasets_mostly_dropped": dg.MetadataValue.json(heavy),
                      "opted_out": dg.MetadataValue.json(sorted(part.loc[part["opted_out"], "dataset_id"]))}))
    return dg.MaterializeResult(
        metadata={"units": len(gate), "passed": sum(1 for g in gate if not g),
                  "dropped": sum(1 for g in gate if g),
                  "dropped_by_rule": dg.MetadataValue.md(markdown_counts(by_rule, "rule")),
                  "opted_out": dg.MetadataValue.json(res.opted_out), "path": dg.MetadataValue.path(str(path))},
        check_results=checks)
