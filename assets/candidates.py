"""question_templates, option_pools and qa_candidates (rows only: nothing is drawn before selection)."""

from functools import partial

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from assets.ingest import markdown_counts
from assets.metadata import redacted_failures, table_metadata
from assets.resources import LLMResource, MedbenchResource
from pipelines.candidates.options import build_pools, pools_from_table, pools_table
from pipelines.candidates.rows import (
    REGION_COLUMNS,
    SLICE_COLUMNS,
    DatasetRows,
    build_candidates,
)
from pipelines.candidates.templates import generate_templates
from pipelines.candidates.validate import load_cues
from pipelines.llm import usage_summary
from pipelines.processes import release_freed_memory
from pipelines.redact import redact, redact_obj
from pipelines.run_state import record_llm_calls
from pipelines.storage import atomic_write_table, stored_masks
from pipelines.summary import expected_without_candidates
from pipelines.vocab.frame import vocab_frame


@dg.asset(group_name="candidates", deps=["label_vocab"],
          description="Question templates: the reviewed offline bank plus GPT-4o candidates (cached), validated.")
def question_templates(context: dg.AssetExecutionContext, medbench: MedbenchResource, llm: LLMResource):
    cfg = medbench.config
    vocab = vocab_frame(medbench.layout.read("label_vocab"))
    counting = {ds for ds in medbench.dataset_ids if medbench.sources.get(ds).entry.task_type == "det"}
    with redacted_failures():
        run = generate_templates(vocab, cfg, load_cues(), llm.client(cfg), counting if cfg.questions.counting else set())
    path = atomic_write_table(run.table, medbench.layout.table("question_templates"))
    df = run.table.to_pandas()
    usage = usage_summary(run.calls)
    notes = [redact(n) for n in run.notes]
    for note in notes:
        context.log.warning(note) if "no API key" in note or "malformed" in note else context.log.info(note)
    failed = [c.error for c in run.calls if c.error]
    record_llm_calls(medbench.layout.root, "question_templates", usage["requests"], len(failed), failed)
    if failed:
        context.log.warning(f"{len(failed)} of {usage['requests']} LLM template requests failed (the offline bank "
                            f"covers them): {failed[0]}")
    return dg.MaterializeResult(metadata={
        "templates": len(df), "by_status": dg.MetadataValue.md(markdown_counts(df["review_status"].value_counts().to_dict(), "status")),
        "by_origin": dg.MetadataValue.md(markdown_counts(df["origin"].value_counts().to_dict(), "origin")),
        "model": cfg.llm.model, "api_calls": usage["api_calls"], "cache_hits": usage["cache_hits"],
        "prompt_tokens": usage["prompt_tokens"], "completion_tokens": usage["completion_tokens"],
        "cost_usd": usage["cost_usd"], "llm_errors": usage["errors"],
        "calls": dg.MetadataValue.json(redact_obj(usage["calls"])),
        "notes": dg.MetadataValue.md("\n".join(f"- {n}" for n in notes) or "-"),
        "path": dg.MetadataValue.path(str(path))})


@dg.asset(group_name="candidates", deps=["label_vocab"],
          description="Option pools: per dataset for image-level items, shared per (modality, task, granularity) for regions.")
def option_pools(context: dg.AssetExecutionContext, medbench: MedbenchResource) -> dg.MaterializeResult:
    import pyarrow as pa
    vocab = vocab_frame(medbench.layout.read("label_vocab"))
    table = pa.Table.from_pandas(pools_table(build_pools(vocab)), preserve_index=False)
    path = atomic_write_table(table, medbench.layout.table("option_pools"))
    return dg.MaterializeResult(metadata={"pools": table.num_rows, "path": dg.MetadataValue.path(str(path)),
                                          "small_pools": int((table.column("size").to_numpy() < 2).sum())})


def dataset_rows(medbench: MedbenchResource) -> list[DatasetRows]:
    """The described rows of every registered dataset that has been described."""
    layout, out = medbench.layout, []
    for ds in medbench.dataset_ids:
        if not layout.table("regions", ds).exists():
            continue
        src = medbench.sources.get(ds)
        e = src.entry
        present = set(pq.read_schema(layout.table("slices", ds)).names)  # tables described before a column existed
        slices = layout.read("slices", ds, [c for c in SLICE_COLUMNS if c in present]).to_pandas()
        out.append(DatasetRows(ds, e.modality, e.task_type, slices,
                               layout.read("regions", ds, REGION_COLUMNS).to_pandas(),
                               layout.read("raw_samples", ds).to_pandas()[["sample_id", "dim"]],
                               frozenset(src.label_map.exhaustive_labels()),
                               rle_lookup=partial(stored_masks, layout.table("regions", ds)),
                               partial=frozenset(n for n in src.label_map.labels
                                                 if src.label_map.spec(n).exhaustive is False)))
    return out


@dg.asset(
    group_name="candidates", deps=[question_templates, option_pools, "regions"],
    check_specs=[dg.AssetCheckSpec("datasets_without_candidates", asset="qa_candidates",
                                   description="described datasets that yield no candidate at all, with the reasons (a dataset "
                                                "none of whose planes passes the image gates is listed apart: expected)")],
    description="Every question the described regions allow, as rows with display geometry (no pixels).")
def qa_candidates(context: dg.AssetExecutionContext, medbench: MedbenchResource):
    release_freed_memory()  # the steps before ran in this process: start from what is alive
    cfg, layout = medbench.config, medbench.layout
    vocab = vocab_frame(layout.read("label_vocab"))
    templates = layout.read("question_templates").to_pandas()
    pools = pools_from_table(layout.read("option_pools").to_pandas())
    rows = dataset_rows(medbench)
    result = build_candidates(rows, vocab, templates, pools, cfg)
    path = atomic_write_table(result.table, layout.table("qa_candidates"))
    skips = pd.DataFrame([{"dataset_id": d, "reason": r, "items": int(n)}
                          for d, c in sorted(result.skipped_by_dataset.items()) for r, n in sorted(c.items())],
                         columns=["dataset_id", "reason", "items"])
    atomic_write_table(pa.Table.from_pandas(skips, preserve_index=False), layout.table("candidate_skips"))
    df = result.table.select(["unit_id", "dataset_id", "granularity", "clinical_vqa_task"]).to_pandas()
    per_ds = df.groupby("dataset_id")["unit_id"].nunique().to_dict()
    empty = {d.dataset_id: dict(result.skipped_by_dataset.get(d.dataset_id, {})) for d in rows
             if not per_ds.get(d.dataset_id)}
    unexpected = {d: why for d, why in empty.items() if not expected_without_candidates(why)}
    return dg.MaterializeResult(
        metadata={**table_metadata(result.table), "items": len(df), "units": int(df["unit_id"].nunique()),
                  "skipped": dg.MetadataValue.md(markdown_counts(result.skipped, "reason")),
                  "units_by_dataset": dg.MetadataValue.md(markdown_counts(per_ds, "dataset")),
                  "by_granularity": dg.MetadataValue.md(markdown_counts(df["granularity"].value_counts().to_dict(), "granularity")),
                  "by_task": dg.MetadataValue.md(markdown_counts(df["clinical_vqa_task"].value_counts().to_dict(), "task")),
                  "path": dg.MetadataValue.path(str(path))},
        check_results=[
            dg.AssetCheckResult(check_name="datasets_without_candidates", passed=not unexpected,
                                severity=dg.AssetCheckSeverity.ERROR,
                                metadata={"datasets": dg.MetadataValue.json(unexpected),
                                          "expected": dg.MetadataValue.json({d: w for d, w in empty.items()
                                                                            if d not in unexpected})})])
