"""prompted_images (box / mask / contour renderings) and per-dataset review sheets."""

import base64
from collections import Counter

import dagster as dg

from assets.ingest import markdown_counts
from assets.partitions import datasets_partitions
from assets.resources import MedbenchResource
from pipelines.render import render_dataset
from pipelines.review import contact_sheet
from pipelines.storage import atomic_write_bytes, atomic_write_table


@dg.asset(
    partitions_def=datasets_partitions, group_name="per_dataset", deps=["regions"],
    check_specs=[dg.AssetCheckSpec("unrenderable_regions", asset="prompted_images",
                                   description="regions too small to see or lying in the edge band (not drawn)")],
    description="The image each question will show, per region and perceptual granularity.",
)
def prompted_images(context: dg.AssetExecutionContext, medbench: MedbenchResource):
    ds = context.partition_key
    layout = medbench.layout
    table = render_dataset(ds, layout.read("slices", ds), layout.read("regions", ds), medbench.config, layout.root)
    path = atomic_write_table(table, layout.table("prompted_images", ds))
    flags = Counter(f for f in table.column("flag").to_pylist() if f)
    grans = Counter(table.column("granularity").to_pylist())
    return dg.MaterializeResult(
        metadata={"prompts": table.num_rows, "by_granularity": dg.MetadataValue.md(markdown_counts(grans, "granularity")),
                  "flagged": sum(flags.values()), "path": dg.MetadataValue.path(str(path))},
        check_results=[dg.AssetCheckResult(
            check_name="unrenderable_regions", passed=not flags, severity=dg.AssetCheckSeverity.WARN,
            metadata={"flagged": sum(flags.values()), "by_flag": dg.MetadataValue.md(markdown_counts(flags, "flag"))})])


@dg.asset(partitions_def=datasets_partitions, group_name="per_dataset", deps=[prompted_images],
          description="A contact sheet of seeded random rendered items, to check overlay alignment by eye.")
def review_sheets(context: dg.AssetExecutionContext, medbench: MedbenchResource) -> dg.MaterializeResult:
    ds = context.partition_key
    layout = medbench.layout
    png, n = contact_sheet(ds, layout.read("prompted_images", ds), medbench.config, layout.root)
    path = layout.review_sheet(ds)
    atomic_write_bytes(path, png)
    preview = f"![contact sheet of {ds}](data:image/png;base64,{base64.b64encode(png).decode()})"
    return dg.MaterializeResult(metadata={"tiles": n, "path": dg.MetadataValue.path(str(path)),
                                          "sheet": dg.MetadataValue.md(preview)})
