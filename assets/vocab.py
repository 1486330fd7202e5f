"""label_vocab (MeSH-normalized, tagged labels of every dataset) and the lexical tree export."""

import json
import os
from collections import Counter

import dagster as dg

from assets.ingest import markdown_counts
from assets.metadata import redacted_failures, table_metadata
from assets.resources import LLMResource, MedbenchResource
from pipelines.llm import usage_summary
from pipelines.run_state import record_llm_calls
from pipelines.storage import atomic_write_bytes, atomic_write_table
from pipelines.vocab.build import (
    DatasetLabels,
    build_vocab,
    kinds_by_label,
    unresolved_names,
)
from pipelines.vocab.curated import load_curated
from pipelines.vocab.frame import vocab_frame
from pipelines.vocab.hierarchy import related_pairs
from pipelines.vocab.llm_tags import llm_suggester
from pipelines.vocab.mesh import load_mesh
from pipelines.vocab.tree import lexical_tree, tree_html, tree_json


def _datasets(medbench: MedbenchResource) -> list[DatasetLabels]:
    out = []
    for ds in medbench.dataset_ids:
        path = medbench.layout.table("regions", ds)
        if not path.exists():
            continue
        src = medbench.sources.get(ds)
        out.append(DatasetLabels(ds, src.entry.modality, src.entry.task_type, src.label_map,
                                 str(src.label_map_path.relative_to(medbench.sources.path.parent))
                                 if src.label_map_path.is_relative_to(medbench.sources.path.parent)
                                 else str(src.label_map_path),
                                 kinds_by_label(medbench.layout.read("regions", ds))))
    return out


def strict_labels(cfg) -> bool:
    return cfg.vocab.strict_labels or os.environ.get("MEDBENCH_STRICT", "") in ("1", "true", "yes")


def unresolved_check(unresolved, strict: bool) -> dg.AssetCheckResult:
    """Fails naming every unresolved label; blocks the downstream stages only when strict."""
    names = unresolved_names(unresolved)
    if names:
        action = "run stopped (strict)" if strict else "their items are left out"
        description = f"{len(names)} unresolved label(s), {action}: " + "; ".join(names[:20])
    else:
        description = "every label resolved"
    return dg.AssetCheckResult(
        check_name="unresolved_labels", passed=not names, description=description,
        severity=dg.AssetCheckSeverity.ERROR if strict else dg.AssetCheckSeverity.WARN,
        metadata={"unresolved": len(names), "strict": strict, "labels": dg.MetadataValue.json(names)})


@dg.asset(
    group_name="vocab", deps=["regions"],
    check_specs=[
        dg.AssetCheckSpec("unresolved_labels", asset="label_vocab", blocking=True,
                          description="labels with neither a MeSH descriptor nor a reason (label maps may accept "
                                      "them); their items are left out, and with --strict the run stops"),
        dg.AssetCheckSpec("overlapping_labels", asset="label_vocab",
                          description="canonical labels of one dataset that are synonyms, ancestor/descendant, or differ only in form"),
        dg.AssetCheckSpec("tag_issues", asset="label_vocab",
                          description="labels whose task, department or semantic type is missing or conflicting"),
    ],
    description="Every raw label of every dataset, normalized against MeSH and tagged (task, department, modality, granularity).",
)
def label_vocab(context: dg.AssetExecutionContext, medbench: MedbenchResource, llm: LLMResource):
    cfg = medbench.config
    mesh = load_mesh(cfg.vocab.mesh_source)
    client, calls = llm.client(cfg), []
    suggest = llm_suggester(client, calls) if client.api_key and cfg.questions.use_llm else None
    with redacted_failures():
        table = build_vocab(_datasets(medbench), mesh, load_curated(cfg.vocab.curated_dir), cfg.seed,
                            suggest=suggest, suggest_origin=f"llm:{client.model}")
    path = atomic_write_table(table, medbench.layout.table("label_vocab"))
    failed = [c.error for c in calls if c.error]
    if suggest is not None:
        record_llm_calls(medbench.layout.root, "label_vocab", len(calls), len(failed), failed)
    if failed:
        context.log.warning(f"{len(failed)} of {len(calls)} LLM tag requests failed (those tags stay to the "
                            f"rules): {failed[0]}")
    df = table.to_pandas()
    unresolved = df[df["status"] == "unresolved"]
    pairs = related_pairs(df)
    issues = df[df["tag_issues"].map(len) > 0]
    rules = [r for rs in df["rules_fired"] for r in rs]
    return dg.MaterializeResult(
        metadata={**table_metadata(table), "raw_labels": len(df), "canonical_labels": df["canonical_label"].nunique(),
                  "mesh_version": mesh.version, "llm_tag_calls": usage_summary(calls)["requests"],
                  "llm_tag_errors": len(failed),
                  "by_status": dg.MetadataValue.md(markdown_counts(df["status"].value_counts().to_dict(), "status")),
                  "rules_fired": dg.MetadataValue.md(markdown_counts(Counter(rules), "rule")),
                  "path": dg.MetadataValue.path(str(path))},
        check_results=[
            unresolved_check(unresolved, strict_labels(cfg)),
            dg.AssetCheckResult(check_name="overlapping_labels", passed=not pairs,
                                severity=dg.AssetCheckSeverity.WARN,
                                metadata={"pairs": len(pairs), "examples": dg.MetadataValue.json(
                                    [" / ".join(p) for p in pairs[:50]])}),
            dg.AssetCheckResult(check_name="tag_issues", passed=issues.empty, severity=dg.AssetCheckSeverity.WARN,
                                metadata={"labels": len(issues), "issues": dg.MetadataValue.json(
                                    [f"{r.dataset_id}: {r.raw_label}: {'; '.join(r.tag_issues)}"
                                     for r in issues.itertuples()][:100])}),
        ])


@dg.asset(group_name="vocab", deps=[label_vocab],
          description="Lexical tree of the vocabulary (task/department/granularity -> modality -> labels) as JSON and HTML.")
def lexical_tree_export(context: dg.AssetExecutionContext, medbench: MedbenchResource) -> dg.MaterializeResult:
    vocab = vocab_frame(medbench.layout.read("label_vocab"))
    tree = lexical_tree(vocab, label="canonical_label", weight="regions")
    out = medbench.layout.root / "lexical_tree"
    atomic_write_bytes(out / "vocabulary_tree.json", tree_json(tree))
    atomic_write_bytes(out / "vocabulary_tree.html", tree_html(tree, "medbench vocabulary: lexical tree"))
    return dg.MaterializeResult(metadata={
        "tasks": len(tree["task"]), "departments": len(tree["department"]),
        "json": dg.MetadataValue.path(str(out / "vocabulary_tree.json")),
        "html": dg.MetadataValue.path(str(out / "vocabulary_tree.html")),
        "tree": dg.MetadataValue.json(json.loads(tree_json(tree)))})
