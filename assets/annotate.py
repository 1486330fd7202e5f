"""roi_annotations (every region and image, rows only) and roi_exports (beside the benchmark, with images)."""


import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa

from assets.resources import LLMResource, MedbenchResource
from pipelines.annotate.export import add_paragraphs, exported_rows, write_exports, write_images
from pipelines.annotate.run import annotate_dataset
from pipelines.publish import card_with_roi
from pipelines.questions.llm import LLMUnavailable, usage_summary
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
                                            "(its centroid lies inside its box)")],
          description="MedTrinity-style multigranular annotation of every region and every whole image: global "
                      "fields, local ROI geometry and position words (image and patient side), intensity inside vs "
                      "a ring (HU for CT), boundary, shape, relations to other structures, template caption.")
def roi_annotations(context: dg.AssetExecutionContext, medbench: MedbenchResource) -> dg.MaterializeResult:
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
                                metadata={"mismatches": mismatch, "checked": len(roi)})])


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
                                                     "(warns above 0; such rows keep the template caption)")],
          description="ROI annotations of the images the benchmark shows, written beside it: roi/{split} Parquet "
                      "(the card's roi_annotations config), roi/medtrinity/{split} (file_name, caption, source) and "
                      "the unprompted images; optional LLM paragraphs, fact-checked.")
def roi_exports(context: dg.AssetExecutionContext, medbench: MedbenchResource, llm: LLMResource):
    cfg, layout = medbench.config, medbench.layout
    folder = layout.root / "benchmark"
    ann = layout.read("roi_annotations").to_pandas()
    bench = layout.read("benchmark", columns=["image_id", "split"]).to_pandas()
    rows = exported_rows(ann, bench, every=cfg.annotate.export_images == "all")
    usage = {"requests": 0}
    if cfg.annotate.use_llm and not rows.empty:
        client = llm.client(cfg)
        try:
            client.require_key()
            rows, records = add_paragraphs(rows, client, cfg)
            usage = usage_summary(records)
        except LLMUnavailable as exc:
            context.log.info(f"no LLM paragraphs: {exc}")
    datasets = sorted(rows["dataset_id"].unique())
    images = write_images(rows, medbench.sources, {d: layout.read("raw_samples", d).to_pandas() for d in datasets},
                          {d: layout.read("slices", d).to_pandas() for d in datasets}, folder / "roi", cfg)
    counts = write_exports(rows, folder)
    readme = folder / "README.md"
    if readme.is_file():
        atomic_write_bytes(readme, card_with_roi(readme.read_bytes(), folder))
    gen = rows[rows["llm_fact_check"].isin(["pass", "fail"])]
    failed = int((gen["llm_fact_check"] == "fail").sum())
    share = round(failed / len(gen), 4) if len(gen) else 0.0
    return dg.MaterializeResult(
        metadata={"rows": len(rows), "images": images, "files": dg.MetadataValue.json(counts),
                  "llm_requests": usage.get("requests", 0), "llm_cost_usd": usage.get("cost_usd", 0.0),
                  "folder": dg.MetadataValue.path(str(folder / "roi"))},
        check_results=[dg.AssetCheckResult(
            check_name="llm_fact_check", passed=failed == 0, severity=dg.AssetCheckSeverity.WARN,
            metadata={"generated": len(gen), "failed": failed, "failed_share": share,
                      "errors": int((rows["llm_fact_check"] == "error").sum()),
                      "issues": dg.MetadataValue.json(gen[gen["llm_fact_check"] == "fail"]["llm_fact_issues"]
                                                      .head(10).map(list).tolist())})])
