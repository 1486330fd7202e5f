"""benchmark: the selected units, their items, splits and audit, with the item checks the audit reports."""

import json

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from assets.ingest import markdown_counts
from assets.metadata import table_metadata
from assets.resources import MedbenchResource
from pipelines.candidates.audit import Outcome, item_checks
from pipelines.candidates.options import pools_from_table
from pipelines.processes import release_freed_memory
from pipelines.select.changelog import changelog, changelog_markdown
from pipelines.storage import atomic_write_bytes, atomic_write_table
from pipelines.validity.reviews import decisions_path, rejected_units
from pipelines.vocab.frame import vocab_frame

SUMMARY_FIGURES = ("analytic_chance", "random_guess", "text_only_accuracy", "text_only_chance", "text_only_test_items",
                   "text_only_flagged_units", "text_only_exceeds", "text_only_dropped_units", "text_only_accuracy_before",
                   "review_rejected_units", "text_only_dropped_by_dataset", "options_only_accuracy",
                   "metadata_only_accuracy", "val_share", "key_balance_dropped_units", "constant_key_dropped_units",
                   "duplicate_registration_units", "text_only_by_task_dataset", "duplicates", "dropped_by_dataset")
BLOCKING = ["split_disjoint", "no_related_option", "no_cross_modality_option", "duplicate_options",
            "answer_among_distractors", "stem_contains_option", "cue_matches_rendering"]
ADVISORY = ["letter_balance", "baselines", "pool_too_small", "text_only_baseline", "every_dataset_has_items"]


def audit_path(layout):
    """The benchmark audit's figures, written by `benchmark` and shown by `benchmark_exports`."""
    return layout.table("benchmark_audit").with_suffix(".json")


def plane_hashes(layout, dataset_ids: list[str], task_types: dict[str, str] | None = None) -> pd.DataFrame:
    """image_id, dataset_id, sha256 and pHash of every described plane of the registered datasets, with each
    dataset's task type when given, for the duplicate registrations and the leakage components."""
    cols = ["image_id", "dataset_id", "sha256", "phash"]
    parts = [pq.read_table(p, columns=cols).to_pandas() for p in sorted((layout.root / "tables" / "slices").glob("*.parquet"))
             if p.stem in dataset_ids]
    planes = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame({c: [] for c in cols})
    return planes.assign(task_type=planes["dataset_id"].map(task_types)) if task_types else planes


def task_types(medbench: MedbenchResource) -> dict[str, str]:
    """Each registered dataset's task type (cls, mcls, det, seg) from its registry entry."""
    return {ds: medbench.sources.get(ds).entry.task_type for ds in medbench.dataset_ids
            if medbench.sources.get(ds) is not None}


def changelog_path(layout):
    """Item by item, what this build changed against the one before (written by `benchmark`, exported privately)."""
    return layout.table("benchmark_changelog").with_suffix(".json")


def datasets_without_items(medbench: MedbenchResource, bench: pd.DataFrame) -> Outcome:
    """A described dataset (it has regions) that yields no benchmark item fails this check (not a warning), unless
    that is an expected outcome the summary names (all images below the gates, the same images as an earlier
    registration, every label excluded): a whole registration must not vanish silently."""
    from pipelines.summary import summarize
    have = set(bench["dataset_id"])
    empty = [ds for ds in medbench.dataset_ids if ds not in have and medbench.layout.table("regions", ds).is_file()
             and pq.ParquetFile(medbench.layout.table("regions", ds)).metadata.num_rows > 0]
    s = summarize(medbench.layout.root, medbench.dataset_ids) if empty else None
    expected = {ds: why for ds in empty if (why := s.expected_empty(ds))}
    unexpected = [ds for ds in empty if ds not in expected]
    return Outcome("every_dataset_has_items", not unexpected, False,
                   {"datasets": ", ".join(unexpected) or "-", "count": len(unexpected),
                    "expected": "; ".join(f"{ds}: {why}" for ds, why in expected.items()) or "-"})


def _severity(warn_only: bool) -> dg.AssetCheckSeverity:
    return dg.AssetCheckSeverity.WARN if warn_only else dg.AssetCheckSeverity.ERROR


@dg.asset(
    group_name="select", deps=["candidate_gates", "qa_candidates", "question_templates", "option_pools", "label_vocab"],
    check_specs=[dg.AssetCheckSpec(n, asset="benchmark", blocking=True) for n in BLOCKING]
    + [dg.AssetCheckSpec(n, asset="benchmark") for n in ADVISORY],
    description="Gated candidates -> at most N units per answer, chosen for diversity; items built for the "
                "selected units only; val/test disjoint by patient/volume; audited.")
def benchmark(context: dg.AssetExecutionContext, medbench: MedbenchResource):
    # selection's blind readers need scikit-learn: loaded when a run selects, not wherever the definitions load
    from pipelines.select.build import build_benchmark
    from pipelines.validity.audit import audit
    release_freed_memory()  # the steps before ran in this process: start from what is alive
    cfg, layout = medbench.config, medbench.layout
    candidates = layout.table("qa_candidates")
    verdicts = layout.read("gate_verdicts").to_pandas()
    vocab = vocab_frame(layout.read("label_vocab"))
    templates = layout.read("question_templates").to_pandas()
    pools = pools_from_table(layout.read("option_pools").to_pandas())
    before = layout.read("benchmark").to_pandas() if layout.table("benchmark").is_file() else None
    built = build_benchmark(candidates, verdicts, vocab, templates, pools, cfg,
                            plane_hashes(layout, medbench.dataset_ids, task_types(medbench)),
                            rejected_units(decisions_path(cfg)))
    table, stats, skipped = built.table, built.stats, built.skipped
    units = set(pq.read_table(candidates, columns=["unit_id"]).column(0).to_pylist())
    log = changelog(before, table.to_pandas(), built.fates, set(medbench.dataset_ids), units)
    atomic_write_bytes(changelog_path(layout), json.dumps(log, indent=1, sort_keys=True).encode())
    if built.duplicates:
        context.log.warning("registrations reading the same images (the later one's copies are left out): " +
                            "; ".join(f"{b} repeats {a} ({s:.0%} of its planes)" for a, b, s in built.duplicates))
    dropped = pd.DataFrame({"unit_id": stats.pop("text_only_dropped")}, dtype=str)
    by_dataset = stats.pop("text_only_dropped_by_dataset")
    dropped_by_dataset = stats.pop("dropped_by_dataset")
    atomic_write_table(pa.Table.from_pandas(dropped, preserve_index=False), layout.table("benchmark_text_only_drops"))
    path = atomic_write_table(table, layout.table("benchmark"))
    bench = table.to_pandas()
    main = bench[bench["subset"] == "main"]  # perturbed copies repeat their originals' text: audited once
    outcomes, figures = audit(main, vocab, cfg.seed, cfg.benchmark)
    items = {o.name: o for o in item_checks(bench[bench["subset"] != "grounding"], skipped)}  # boxes have no options
    outcomes += [items[n] for n in ("duplicate_options", "answer_among_distractors", "stem_contains_option",
                                    "cue_matches_rendering", "pool_too_small")]
    flagged = pd.DataFrame({"unit_id": figures["text_only_flagged"]})
    atomic_write_table(pa.Table.from_pandas(flagged, preserve_index=False), layout.table("benchmark_text_only_flags"))
    drops = layout.read("gate_drops").to_pandas().groupby("rule")["dropped"].sum()
    gated = {f"gated_out_{rule}": int(n) for rule, n in drops.items()}
    atomic_write_bytes(audit_path(layout), json.dumps(
        {**{k: v for k, v in {**figures, **stats, "text_only_dropped_by_dataset": by_dataset,
                              "dropped_by_dataset": dropped_by_dataset, "duplicates": built.duplicates}.items()
            if k in SUMMARY_FIGURES}, **gated}, sort_keys=True).encode())
    outcomes.append(datasets_without_items(medbench, bench))  # reads the audit just written
    return dg.MaterializeResult(
        metadata={**table_metadata(table), **stats, "not_built": dg.MetadataValue.md(markdown_counts(dict(skipped), "reason")),
                  "changelog": dg.MetadataValue.md(changelog_markdown(log)),
                  "duplicate_registrations": dg.MetadataValue.md(
                      "\n".join(f"- {b} repeats {a} ({s:.0%})" for a, b, s in built.duplicates) or "-"),
                  "path": dg.MetadataValue.path(str(path)),
                  "analytic_chance": round(figures["analytic_chance"], 4), "random_guess": round(figures["random_guess"], 4),
                  "text_only_accuracy": round(figures["text_only_accuracy"], 4),
                  "text_only_chance": round(figures["text_only_chance"], 4)},
        check_results=[dg.AssetCheckResult(
            check_name=o.name, passed=o.passed, severity=_severity(o.warn_only),
            metadata={k: dg.MetadataValue.md(v) if isinstance(v, str) and "|" in v else v for k, v in o.metadata.items()})
            for o in outcomes])
