"""roi_annotations (every named region and image, rows only) and roi_exports (beside the benchmark: a public config
of images no test item uses, the exam's annotations kept private)."""


import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa

from assets.resources import LLMResource, MedbenchResource
from pipelines.llm import LLMUnavailable, usage_summary
from pipelines.records import ROI_ANNOTATIONS
from pipelines.storage import atomic_write_bytes, atomic_write_table


@dg.asset(group_name="annotate", deps=["slices", "regions", "label_vocab"],
          check_specs=[
              dg.AssetCheckSpec("roi_masks_not_degenerate", asset="roi_annotations",
                                description="no ROI has an empty mask or a mask covering the whole image"),
              dg.AssetCheckSpec("template_captions_fact_checked", asset="roi_annotations",
                                description="every template caption passes the fact check against its own fields"),
              dg.AssetCheckSpec("position_words_match_bbox", asset="roi_annotations",
                                description="the horizontal/vertical words name a bin the ROI's box spans "
                                            "(its centroid lies inside its box)"),
              dg.AssetCheckSpec("names_only_for_named_labels", asset="roi_annotations",
                                description="no excluded, unresolved or colour-named label is named in any field "
                                            "a text is written from"),
              dg.AssetCheckSpec("counts_only_for_exhaustive_labels", asset="roi_annotations",
                                description="no count or multiplicity for a label the label map does not mark "
                                            "exhaustive")],
          description="MedTrinity-style multigranular annotation of every region and every whole image: global "
                      "fields, local ROI geometry and position words (image and patient side), intensity inside vs "
                      "a ring (HU for CT), boundary, shape, relations to other structures, template caption.")
def roi_annotations(context: dg.AssetExecutionContext, medbench: MedbenchResource) -> dg.MaterializeResult:
    from pipelines.annotate.checks import counts_without_exhaustive, unnamed_names
    from pipelines.annotate.run import annotate_dataset
    cfg, layout = medbench.config, medbench.layout
    vocab = layout.read("label_vocab").to_pandas()
    parts = []
    for ds in medbench.dataset_ids:
        regions = layout.read("regions", ds).to_pandas()
        if regions.empty:
            continue
        parts.append(annotate_dataset(medbench.sources.get(ds), cfg, layout.read("raw_samples", ds).to_pandas(),
                                      layout.read("slices", ds).to_pandas(), regions, vocab))
        context.log.info(f"{ds}: {parts[-1].num_rows} annotations")
    table = pa.concat_tables(parts) if parts else ROI_ANNOTATIONS.empty_table()
    path = atomic_write_table(table, layout.table("roi_annotations"))
    df = table.to_pandas()
    roi = df[(df["scope"] == "roi") & (df["kind"] != "image")]
    degenerate = roi[(roi["area_px"] <= 0) | (roi["area_ratio"] >= 1.0)]
    failed = df[df["fact_issues"].map(len) > 0]
    mismatch = position_mismatches(roi)
    unnamed = unnamed_names(df, vocab)
    counted = counts_without_exhaustive(df)
    return dg.MaterializeResult(
        metadata={"rows": len(df), "roi_rows": int((df["scope"] == "roi").sum()),
                  "image_rows": int((df["scope"] == "image").sum()),
                  "by_dataset": dg.MetadataValue.json(df.groupby("dataset_id").size().to_dict()),
                  "intensity_words": dg.MetadataValue.json(roi["intensity_word"].value_counts().to_dict()),
                  "path": dg.MetadataValue.path(str(path)),
                  "examples": dg.MetadataValue.md("\n\n".join(f"- {c}" for c in roi["caption"].head(3)) or "-")},
        check_results=[
            dg.AssetCheckResult(check_name="roi_masks_not_degenerate", passed=degenerate.empty,
                                metadata={"empty_or_full": len(degenerate),
                                          "examples": dg.MetadataValue.json(degenerate["annotation_id"].head(10).tolist())}),
            dg.AssetCheckResult(check_name="template_captions_fact_checked", passed=failed.empty,
                                metadata={"failed": len(failed), "share": round(len(failed) / max(len(df), 1), 4)}),
            dg.AssetCheckResult(check_name="position_words_match_bbox", passed=mismatch == 0,
                                metadata={"mismatches": mismatch, "checked": len(roi)}),
            dg.AssetCheckResult(check_name="names_only_for_named_labels", passed=unnamed.empty,
                                metadata={"rows": int(unnamed["annotation_id"].nunique()),
                                          "names": dg.MetadataValue.json(sorted(set(unnamed["name"]))[:20])}),
            dg.AssetCheckResult(check_name="counts_only_for_exhaustive_labels", passed=counted.empty,
                                metadata={"rows": len(counted),
                                          "labels": dg.MetadataValue.json(sorted(set(counted["raw_label"]))[:20])})])


def position_mismatches(roi: pd.DataFrame) -> int:
    """ROIs whose position bins fall outside the bins their box spans (a mask's centroid lies in its box)."""
    from pipelines.annotate.words import EDGES, H_WORDS, V_WORDS
    if roi.empty:
        return 0
    b = np.array(roi["bbox_norm"].tolist())
    lo_h, hi_h = np.searchsorted(EDGES, b[:, 0], side="right"), np.searchsorted(EDGES, b[:, 2], side="left")
    lo_v, hi_v = np.searchsorted(EDGES, b[:, 1], side="right"), np.searchsorted(EDGES, b[:, 3], side="left")
    h = roi["position_h"].map(H_WORDS.index).to_numpy()
    v = roi["position_v"].map(V_WORDS.index).to_numpy()
    return int(((h < lo_h) | (h > hi_h) | (v < lo_v) | (v > hi_v)).sum())


@dg.asset(group_name="annotate", deps=[roi_annotations, "benchmark_exports"],
          check_specs=[dg.AssetCheckSpec("llm_fact_check", asset="roi_exports",
                                         description="share of LLM paragraphs that failed the fact check "
                                                     "(warns above 0; such rows keep the template caption)"),
                       dg.AssetCheckSpec("roi_public_not_in_exam", asset="roi_exports",
                                         description="no published ROI image is a test item's image, has its "
                                                     "pixels, or shares its group or leakage component")],
          description="ROI annotations written beside the benchmark: the roi_annotations config (one row per image "
                      "no test item uses, pixels embedded, ROIs and their relations as lists of structs, the "
                      "MedTrinity caption) and, kept private beside the answer key, the annotations of the exam's "
                      "images; optional LLM paragraphs, fact-checked.")
def roi_exports(context: dg.AssetExecutionContext, medbench: MedbenchResource, llm: LLMResource):
    from pipelines.annotate.leak import exam_images, published_leaks
    from pipelines.annotate.export import (
        add_paragraphs,
        chosen_rows,
        dedupe,
        partition,
        public_records,
        read_public,
        render_images,
        write_private,
        write_public,
    )  # HF datasets: loaded by the runs that export ROIs
    from pipelines.publish import card_with_roi
    cfg, layout = medbench.config, medbench.layout
    folder = layout.root / "benchmark"
    bits = cfg.benchmark.near_duplicate_bits
    ann = layout.read("roi_annotations").to_pandas()
    bench = layout.read("benchmark", columns=["image_id", "split", "group_id", "split_group"]).to_pandas()
    slices = {d: layout.read("slices", d).to_pandas() for d in medbench.dataset_ids}
    planes = pd.concat([s[["image_id", "group_id", "sha256", "phash"]] for s in slices.values()], ignore_index=True)
    chosen = chosen_rows(ann, bench, every=cfg.annotate.export_images == "all")
    public, private, links = partition(chosen, bench, planes, bits)
    public = dedupe(public)
    usage = {"requests": 0}
    if cfg.annotate.use_llm and not public.empty:
        client = llm.client(cfg)
        try:
            client.require_key()
            public, records = add_paragraphs(public, client, cfg)
            usage = usage_summary(records)
        except LLMUnavailable as exc:
            context.log.info(f"no LLM paragraphs: {exc}")
    datasets = sorted(public["dataset_id"].unique())
    images = render_images(public, medbench.sources, {d: layout.read("raw_samples", d).to_pandas() for d in datasets},
                           slices, cfg)
    files = write_public(public_records(public, images), folder, cfg.benchmark.max_shard_bytes)
    write_private(private, links, folder)
    readme = folder / "README.md"
    if readme.is_file():
        atomic_write_bytes(readme, card_with_roi(readme.read_bytes(), folder))
    leaks = published_leaks(read_public(folder), planes, exam_images(bench, planes), bits)
    gen = public[public["llm_fact_check"].isin(["pass", "fail"])]
    failed = int((gen["llm_fact_check"] == "fail").sum())
    share = round(failed / len(gen), 4) if len(gen) else 0.0
    return dg.MaterializeResult(
        metadata={"public_images": len(images), "public_rows": len(public), "private_rows": len(private),
                  "private_images": int(private["image_id"].nunique()),
                  "exam_links": dg.MetadataValue.json(links["reason"].value_counts().to_dict()),
                  "duplicates_merged": int(public.drop_duplicates("image_id")["also_in"].map(len).sum()) if len(public) else 0,
                  "files": dg.MetadataValue.json([p.relative_to(folder).as_posix() for p in files]),
                  "llm_requests": usage.get("requests", 0), "llm_cost_usd": usage.get("cost_usd", 0.0),
                  "folder": dg.MetadataValue.path(str(folder / "roi_annotations"))},
        check_results=[
            dg.AssetCheckResult(
                check_name="llm_fact_check", passed=failed == 0, severity=dg.AssetCheckSeverity.WARN,
                metadata={"generated": len(gen), "failed": failed, "failed_share": share,
                          "errors": int((public["llm_fact_check"] == "error").sum()),
                          "issues": dg.MetadataValue.json(gen[gen["llm_fact_check"] == "fail"]["llm_fact_issues"]
                                                          .head(10).map(list).tolist())}),
            dg.AssetCheckResult(
                check_name="roi_public_not_in_exam", passed=leaks.empty,
                metadata={"linked_public_images": len(leaks),
                          "examples": dg.MetadataValue.json(leaks.head(10).to_dict("records"))})])
