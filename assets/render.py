"""rendered_items (PNGs of the selected items only) and the per-dataset review sheets."""

import dagster as dg

from assets.metadata import preview_markdown, table_metadata
from assets.resources import MedbenchResource
from pipelines.processes import release_freed_memory
from pipelines.render.items import DatasetTables, render_items
from pipelines.render.review import contact_sheet
from pipelines.run_state import record_stale
from pipelines.storage import atomic_write_bytes, atomic_write_table


@dg.asset(group_name="render", deps=["benchmark"],
          check_specs=[dg.AssetCheckSpec("every_item_rendered", asset="rendered_items", blocking=True,
                                         description="every benchmark item has exactly one PNG on disk, at its "
                                                     "recorded display size (a stale dataset only warns: its "
                                                     "items keep their last good image or are left out)")],
          description="The image each selected item shows: its plane re-decoded from the source, at display "
                      "geometry, with the box/mask/contour drawn. Nothing else is rendered.")
def rendered_items(context: dg.AssetExecutionContext, medbench: MedbenchResource):
    release_freed_memory()  # the steps before ran in this process: start from what is alive
    cfg, layout = medbench.config, medbench.layout
    bench = layout.read("benchmark").to_pandas()
    cands = layout.read(
        "qa_candidates", columns=["item_id", "image_width", "image_height"]).to_pandas()
    tables = {ds: DatasetTables(medbench.sources.get(ds), layout.read("raw_samples", ds).to_pandas(),
                                layout.read("slices", ds).to_pandas(), layout.read("regions", ds).to_pandas())
              for ds in sorted(set(bench["dataset_id"]))}
    base = bench[["item_id", "variant_of"]].assign(  # a copy shows its original's plane at the same size
        cand_id=lambda d: d["variant_of"].where(d["variant_of"].notna(), d["item_id"]))
    sizes = base.merge(cands.rename(columns={"item_id": "cand_id"}), on="cand_id")[["item_id", "image_width", "image_height"]]
    previous = layout.read("rendered_items").to_pandas() if layout.table("rendered_items").is_file() else None
    result = render_items(bench, tables, cfg, layout.rendered(), previous=previous,
                          sizes={r.item_id: (r.image_width, r.image_height) for r in sizes.itertuples()})
    table, stale = result.table, result.stale
    path = atomic_write_table(table, layout.table("rendered_items"))
    record_stale(layout.root, {ds: s.as_dict() for ds, s in stale.items()})
    for ds, s in sorted(stale.items()):
        context.log.warning(f"dataset {ds} is stale: {s.samples} sample(s) could not be rendered ({s.reason}); "
                            f"{s.reused} item(s) keep the last good image, {len(s.left_out)} are left out")
    got = table.to_pandas().merge(sizes, on="item_id")
    wrong_size = int(((got["width"] != got["image_width"]) | (got["height"] != got["image_height"])).sum())
    left_out = {i for s in stale.values() for i in s.left_out}
    missing = sorted(set(bench["item_id"]) - set(got["item_id"]) - left_out)
    absent = [p for p in got["image_path"] if not (layout.root / p).is_file()]
    ok = not missing and not absent and wrong_size == 0
    return dg.MaterializeResult(
        metadata={**table_metadata(table), "pngs": table.num_rows, "bytes": int(sum((layout.root / p).stat().st_size for p in got["image_path"])),
                  "stale_datasets": dg.MetadataValue.json({ds: s.as_dict() for ds, s in sorted(stale.items())}),
                  "path": dg.MetadataValue.path(str(path)), "folder": dg.MetadataValue.path(str(layout.rendered()))},
        check_results=[dg.AssetCheckResult(  # stale datasets warn (the others export); anything else blocks
            check_name="every_item_rendered", passed=ok and not stale,
            severity=dg.AssetCheckSeverity.ERROR if not ok else dg.AssetCheckSeverity.WARN,
            metadata={"items_without_png": len(missing), "files_missing": len(absent), "wrong_size": wrong_size,
                      "stale_datasets": ", ".join(sorted(stale)) or "-", "left_out_stale": len(left_out)})])


@dg.asset(group_name="render", deps=[rendered_items],
          description="One contact sheet per dataset of seeded random benchmark items, to check marks by eye.")
def review_sheets(context: dg.AssetExecutionContext, medbench: MedbenchResource) -> dg.MaterializeResult:
    cfg, layout = medbench.config, medbench.layout
    bench = layout.read("benchmark").to_pandas()[["item_id", "dataset_id", "answer_label", "granularity"]]
    items = bench.merge(layout.read("rendered_items").to_pandas()[["item_id", "image_path"]], on="item_id")
    items["caption"] = items["answer_label"].str.slice(0, 18) + " | " + items["granularity"]
    previews, tiles = [], 0
    for ds, part in items.groupby("dataset_id", sort=True):
        png, n = contact_sheet(ds, part.to_dict("records"), cfg, layout.root)
        atomic_write_bytes(layout.review_sheet(ds), png)
        tiles += n
        previews.append(f"### {ds}\n" + preview_markdown(layout.review_sheet(ds), 512, f"contact sheet of {ds}"))
    return dg.MaterializeResult(metadata={"sheets": len(previews), "tiles": tiles,
                                          "folder": dg.MetadataValue.path(str(layout.root / "review")),
                                          "sheets_preview": dg.MetadataValue.md("\n\n".join(previews) or "-")})
