"""rendered_items (PNGs of the selected items only) and the per-dataset review sheets."""

import dagster as dg

from assets.metadata import preview_markdown, table_metadata
from assets.resources import MedbenchResource
from pipelines.render.items import DatasetTables, render_items
from pipelines.render.review import contact_sheet
from pipelines.storage import atomic_write_bytes, atomic_write_table


@dg.asset(group_name="render", deps=["benchmark"],
          check_specs=[dg.AssetCheckSpec("every_item_rendered", asset="rendered_items", blocking=True,
                                         description="every benchmark item has exactly one PNG on disk, at its "
                                                     "recorded display size")],
          description="The image each selected item shows: its plane re-decoded from the source, at display "
                      "geometry, with the box/mask/contour drawn. Nothing else is rendered.")
def rendered_items(context: dg.AssetExecutionContext, medbench: MedbenchResource):
    cfg, layout = medbench.config, medbench.layout
    bench = layout.read("benchmark").to_pandas()
    cands = layout.read(
        "qa_candidates", columns=["item_id", "image_width", "image_height"]).to_pandas()
    tables = {ds: DatasetTables(medbench.sources.get(ds), layout.read("raw_samples", ds).to_pandas(),
                                layout.read("slices", ds).to_pandas(), layout.read("regions", ds).to_pandas())
              for ds in sorted(set(bench["dataset_id"]))}
    table = render_items(bench, tables, cfg, layout.rendered())
    path = atomic_write_table(table, layout.table("rendered_items"))
    base = bench[["item_id", "variant_of"]].assign(  # a copy shows its original's plane at the same size
        cand_id=lambda d: d["variant_of"].where(d["variant_of"].notna(), d["item_id"]))
    sizes = base.merge(cands.rename(columns={"item_id": "cand_id"}), on="cand_id")[["item_id", "image_width", "image_height"]]
    got = table.to_pandas().merge(sizes, on="item_id")
    wrong_size = int(((got["width"] != got["image_width"]) | (got["height"] != got["image_height"])).sum())
    missing = sorted(set(bench["item_id"]) - set(got["item_id"]))
    absent = [p for p in got["image_path"] if not (layout.root / p).is_file()]
    return dg.MaterializeResult(
        metadata={**table_metadata(table), "pngs": table.num_rows, "bytes": int(sum((layout.root / p).stat().st_size for p in got["image_path"])),
                  "path": dg.MetadataValue.path(str(path)), "folder": dg.MetadataValue.path(str(layout.rendered()))},
        check_results=[dg.AssetCheckResult(
            check_name="every_item_rendered", passed=not missing and not absent and wrong_size == 0,
            metadata={"items_without_png": len(missing), "files_missing": len(absent), "wrong_size": wrong_size})])


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
