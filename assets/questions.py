"""question_templates, option_pools and qa_candidates (with the item-quality checks)."""


import dagster as dg

from assets.ingest import markdown_counts
from assets.resources import LLMResource, MedbenchResource
from pipelines.questions.assemble import DatasetInputs, assemble
from pipelines.questions.audit import item_checks
from pipelines.questions.llm import usage_summary
from pipelines.questions.options import build_pools, pools_from_table, pools_table
from pipelines.questions.templates import generate_templates
from pipelines.questions.validate import load_cues
from pipelines.storage import atomic_write_table
from pipelines.vocab.frame import vocab_frame


@dg.asset(group_name="questions", deps=["label_vocab"],
          description="Question templates: the reviewed offline bank plus GPT-4o candidates (cached), validated.")
def question_templates(context: dg.AssetExecutionContext, medbench: MedbenchResource, llm: LLMResource):
    cfg = medbench.config
    vocab = vocab_frame(medbench.layout.read("label_vocab"))
    counting = {ds for ds in medbench.dataset_ids if medbench.sources.get(ds).entry.task_type == "det"}
    run = generate_templates(vocab, cfg, load_cues(), llm.client(cfg), counting if cfg.questions.counting else set())
    path = atomic_write_table(run.table, medbench.layout.table("question_templates"))
    df = run.table.to_pandas()
    for note in run.notes:
        context.log.warning(note) if "no API key" in note or "malformed" in note else context.log.info(note)
    usage = usage_summary(run.calls)
    return dg.MaterializeResult(metadata={
        "templates": len(df), "by_status": dg.MetadataValue.md(markdown_counts(df["review_status"].value_counts().to_dict(), "status")),
        "by_origin": dg.MetadataValue.md(markdown_counts(df["origin"].value_counts().to_dict(), "origin")),
        "model": cfg.llm.model, "api_calls": usage["api_calls"], "cache_hits": usage["cache_hits"],
        "prompt_tokens": usage["prompt_tokens"], "completion_tokens": usage["completion_tokens"],
        "cost_usd": usage["cost_usd"], "llm_errors": usage["errors"], "calls": dg.MetadataValue.json(usage["calls"]),
        "notes": dg.MetadataValue.md("\n".join(f"- {n}" for n in run.notes) or "-"),
        "path": dg.MetadataValue.path(str(path))})


@dg.asset(group_name="questions", deps=["label_vocab"],
          description="Option pools: per dataset for image-level items, shared per (modality, task, granularity) for regions.")
def option_pools(context: dg.AssetExecutionContext, medbench: MedbenchResource) -> dg.MaterializeResult:
    import pyarrow as pa
    vocab = vocab_frame(medbench.layout.read("label_vocab"))
    table = pa.Table.from_pandas(pools_table(build_pools(vocab)), preserve_index=False)
    path = atomic_write_table(table, medbench.layout.table("option_pools"))
    return dg.MaterializeResult(metadata={"pools": table.num_rows, "path": dg.MetadataValue.path(str(path)),
                                          "small_pools": int((table.column("size").to_numpy() < 2).sum())})


CHECKS = ["pool_too_small", "duplicate_options", "answer_among_distractors", "letter_balance", "stem_contains_option"]


@dg.asset(
    group_name="questions", deps=[question_templates, option_pools, "prompted_images"],
    check_specs=[dg.AssetCheckSpec(name, asset="qa_candidates") for name in CHECKS],
    description="Every multiple-choice item the prompted images allow, before selection.")
def qa_candidates(context: dg.AssetExecutionContext, medbench: MedbenchResource):
    cfg, layout = medbench.config, medbench.layout
    vocab = vocab_frame(layout.read("label_vocab"))
    templates = layout.read("question_templates").to_pandas()
    pools = pools_from_table(layout.read("option_pools").to_pandas())
    inputs = []
    for ds in medbench.dataset_ids:
        if not layout.table("prompted_images", ds).exists():
            continue
        e = medbench.sources.get(ds).entry
        slices = layout.read("slices", ds).to_pandas()
        inputs.append(DatasetInputs(ds, e.modality, e.task_type, layout.read("prompted_images", ds).to_pandas(),
                                    layout.read("regions", ds).to_pandas(),
                                    layout.read("raw_samples", ds).to_pandas()[["sample_id", "dim"]],
                                    dict(zip(slices["image_id"], slices["png_path"]))))
    result = assemble(inputs, vocab, templates, cfg, pools)
    path = atomic_write_table(result.table, layout.table("qa_candidates"))
    df = result.table.to_pandas()
    checks = item_checks(df, skipped=result.skipped)
    return dg.MaterializeResult(
        metadata={"items": len(df), "skipped": dg.MetadataValue.md(markdown_counts(result.skipped, "reason")),
                  "by_granularity": dg.MetadataValue.md(markdown_counts(df["granularity"].value_counts().to_dict(), "granularity")),
                  "by_task": dg.MetadataValue.md(markdown_counts(df["clinical_vqa_task"].value_counts().to_dict(), "task")),
                  "multi_answer": int(df["multi_answer"].sum()), "path": dg.MetadataValue.path(str(path))},
        check_results=[dg.AssetCheckResult(check_name=c.name, passed=c.passed, severity=dg.AssetCheckSeverity.WARN
                                           if c.warn_only else dg.AssetCheckSeverity.ERROR,
                                           metadata={k: dg.MetadataValue.md(v) if isinstance(v, str) else v
                                                     for k, v in c.metadata.items()}) for c in checks])
