"""benchmark (selection, splits, validity audit as checks) and benchmark_exports (Parquet, TSV, tree, summary)."""

import base64
import json

import dagster as dg
import pandas as pd
import pyarrow as pa

from assets.resources import MedbenchResource
from pipelines.benchmark.audit import audit
from pipelines.benchmark.build import build_benchmark
from pipelines.storage import atomic_write_bytes, atomic_write_table
from pipelines.vocab.frame import vocab_frame

SUMMARY_FIGURES = ("analytic_chance", "random_guess", "text_only_accuracy", "text_only_flagged_units")
BLOCKING = ["split_disjoint", "no_related_option", "no_cross_modality_option"]
ADVISORY = ["letter_balance", "baselines"]


def audit_path(layout):
    """The benchmark audit's figures, written by `benchmark` and shown by `benchmark_exports`."""
    return layout.table("benchmark_audit").with_suffix(".json")


def _slices(medbench: MedbenchResource) -> pd.DataFrame:
    frames = [medbench.layout.read("slices", ds).to_pandas()[["image_id", "sample_id", "axis", "index"]]
              for ds in medbench.dataset_ids if medbench.layout.table("slices", ds).exists()]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["image_id", "sample_id", "axis", "index"])


@dg.asset(
    group_name="benchmark", deps=["qa_candidates"],
    check_specs=[dg.AssetCheckSpec(n, asset="benchmark", blocking=True) for n in BLOCKING]
    + [dg.AssetCheckSpec(n, asset="benchmark") for n in ADVISORY],
    description="At most N items per answer, chosen for diversity; val/test disjoint by patient/volume; audited.")
def benchmark(context: dg.AssetExecutionContext, medbench: MedbenchResource):
    cfg, layout = medbench.config, medbench.layout
    candidates = layout.read("qa_candidates").to_pandas()
    table, stats = build_benchmark(candidates, _slices(medbench), layout.root, cfg)
    path = atomic_write_table(table, layout.table("benchmark"))
    bench = table.to_pandas()
    vocab = vocab_frame(layout.read("label_vocab"))
    outcomes, figures = audit(bench, vocab, cfg.seed, cfg.benchmark.text_only_confidence)
    flagged = pd.DataFrame({"unit_id": figures["text_only_flagged"]})
    atomic_write_table(pa.Table.from_pandas(flagged, preserve_index=False), layout.table("benchmark_text_only_flags"))
    atomic_write_bytes(audit_path(layout), json.dumps(
        {k: v for k, v in figures.items() if k in SUMMARY_FIGURES}, sort_keys=True).encode())
    return dg.MaterializeResult(
        metadata={**{k: v for k, v in stats.items()}, "path": dg.MetadataValue.path(str(path)),
                  "analytic_chance": round(figures["analytic_chance"], 4), "random_guess": round(figures["random_guess"], 4),
                  "text_only_accuracy": round(figures["text_only_accuracy"], 4)},
        check_results=[dg.AssetCheckResult(
            check_name=o.name, passed=o.passed,
            severity=dg.AssetCheckSeverity.WARN if o.warn_only else dg.AssetCheckSeverity.ERROR,
            metadata={k: dg.MetadataValue.md(v) if isinstance(v, str) and "|" in v else v for k, v in o.metadata.items()})
            for o in outcomes])


@dg.asset(group_name="benchmark", deps=[benchmark],
          description="Parquet (datasets Image column, sharded), VLMEvalKit TSVs, lexical tree, summary charts, manifest.")
def benchmark_exports(context: dg.AssetExecutionContext, medbench: MedbenchResource) -> dg.MaterializeResult:
    from pipelines.export.run import export_all
    cfg, layout = medbench.config, medbench.layout
    bench = layout.read("benchmark").to_pandas()
    figures = json.loads(audit_path(layout).read_text())
    out = layout.root / "benchmark"
    manifest = export_all(bench, figures, layout.root, out, cfg)
    md = (out / "summary" / "summary.md").read_text()
    for name in sorted(p.name for p in (out / "summary").glob("*.png")):
        b64 = base64.b64encode((out / "summary" / name).read_bytes()).decode()
        md = md.replace(f"]({name})", f"](data:image/png;base64,{b64})")
    return dg.MaterializeResult(metadata={
        "files": len(manifest["files"]), "val": manifest["splits"]["val"], "test": manifest["splits"]["test"],
        "out": dg.MetadataValue.path(str(out)), "summary": dg.MetadataValue.md(md),
        "manifest": dg.MetadataValue.json({k: v["sha256"][:16] for k, v in manifest["files"].items()})})
