"""benchmark_exports: the selected, rendered items written as Parquet and TSV, then read back and checked."""

import json

import dagster as dg
import pandas as pd

from assets.gates import opt_outs
from assets.metadata import thumbnail_b64
from assets.resources import MedbenchResource
from assets.select import audit_path
from assets.workers import WORKER_MODULES
from pipelines.export.stale import leave_out_unrendered
from pipelines.run_state import stale_datasets


def with_images(medbench: MedbenchResource) -> pd.DataFrame:
    """The benchmark with each item's rendered image path (rendering comes after selection)."""
    bench = medbench.layout.read("benchmark").to_pandas()
    rendered = medbench.layout.read("rendered_items").to_pandas()[["item_id", "image_path", "phash"]]
    return bench.drop(columns="image_path").merge(rendered, on="item_id", how="left")


@dg.asset(group_name="export", deps=["rendered_items"],
          check_specs=[dg.AssetCheckSpec("exported_images_readable", asset="benchmark_exports", blocking=True,
                                         description="every image in the exported Parquet and TSV files is byte "
                                                     "for byte its rendered PNG (sha256), whose size and mark, "
                                                     "measured at render, pass the size/aspect gates"),
                       dg.AssetCheckSpec("no_cross_split_near_duplicates", asset="benchmark_exports", blocking=True,
                                         description="no two exported images in different splits lie within "
                                                     "benchmark.near_duplicate_bits of each other in pHash (taken "
                                                     "at render from the exported pixels)")],
          description="Parquet (datasets Image column, sharded), VLMEvalKit TSVs, lexical tree, summary charts, manifest.")
def benchmark_exports(context: dg.AssetExecutionContext, medbench: MedbenchResource):
    from pipelines.export.run import export_all
    from pipelines.export.verify import (
        RENDERED_FACTS,
        cross_split_duplicates,
        exported_payloads,
        parquet_payloads,
        verify_exports,
    )
    from pipelines.processes import expect_worker_modules, release_freed_memory
    from pipelines.validity.leakage import withhold_marked_leaks
    release_freed_memory()  # the steps before ran in this process: start the export from what is alive
    expect_worker_modules(*WORKER_MODULES["benchmark_exports"])  # this run's workers
    cfg, layout = medbench.config, medbench.layout
    bench = with_images(medbench)
    stale = stale_datasets(layout.root)
    bench, left_out = leave_out_unrendered(bench, set(stale))
    for ds, n in sorted(left_out.items()):
        context.log.warning(f"dataset {ds} is stale ({stale[ds]['reason']}): {n} item(s) without a good image "
                            "left out of this export; re-materialize its slices/regions to bring it back")
    missing = bench["image_path"].isna()
    if missing.any():
        raise dg.Failure(f"{int(missing.sum())} benchmark items have no rendered image: materialize rendered_items")
    bench, withheld = withhold_marked_leaks(bench, cfg.benchmark.near_duplicate_bits)
    if withheld:
        context.log.warning(f"{len(withheld)} items withheld: their marked image lies within "
                            f"{cfg.benchmark.near_duplicate_bits} bits of an image in the other split")
    figures = json.loads(audit_path(layout).read_text())
    out = layout.root / "benchmark"
    read: dict = {}  # the Parquet shards' images, read back while the TSVs are still being written beside
    manifest = export_all(bench.drop(columns="phash"), figures, layout.root, out, cfg, withheld,
                          while_tsvs=lambda stage: read.update(parquet_payloads(stage)))
    rendered = layout.read("rendered_items", columns=RENDERED_FACTS).to_pandas()
    payloads = exported_payloads(out, cfg.benchmark.render_workers, read)  # each exported image hashed once, for both checks
    report = verify_exports(out, rendered, cfg, opt_outs(medbench), payloads)
    leaks = cross_split_duplicates(out, rendered, cfg.benchmark.near_duplicate_bits, payloads)
    md = (out / "summary" / "summary.md").read_text()
    for name in sorted(p.name for p in (out / "summary").glob("*.png")):
        md = md.replace(f"]({name})", f"](data:image/jpeg;base64,{thumbnail_b64(out / 'summary' / name, 480)})")
    return dg.MaterializeResult(
        metadata={"files": len(manifest["files"]), "val": manifest["splits"]["val"], "test": manifest["splits"]["test"],
                  "withheld_cross_split_marked": len(withheld),
                  "stale_datasets": dg.MetadataValue.json({ds: {**info, "left_out_of_export": left_out.get(ds, 0)}
                                                           for ds, info in sorted(stale.items())}),
                  "out": dg.MetadataValue.path(str(out)), "summary": dg.MetadataValue.md(md),
                  "manifest": dg.MetadataValue.json({k: v["sha256"][:16] for k, v in manifest["files"].items()})},
        check_results=[dg.AssetCheckResult(
            check_name="exported_images_readable", passed=not report["problems"],
            metadata={"images_read": report["images"], "problems": dg.MetadataValue.json(report["problems"]),
                      "examples": dg.MetadataValue.md("\n".join(f"- {e}" for e in report["examples"]) or "-")}),
            dg.AssetCheckResult(
                check_name="no_cross_split_near_duplicates", passed=leaks["pairs"] == 0,
                metadata={"images_read": leaks["images"], "pairs": leaks["pairs"],
                          "examples": dg.MetadataValue.md("\n".join(f"- {e}" for e in leaks["examples"]) or "-")})])
