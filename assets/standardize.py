"""slices + regions (describe): every plane and connected instance as rows, with display geometry, pHash
and contrast computed in memory; PNGs only when standardize.write_pngs is 'all'."""

from collections import Counter

import dagster as dg
import pyarrow.compute as pc

from assets.ingest import markdown_counts
from assets.partitions import datasets_partitions
from assets.resources import MedbenchResource
from pipelines.run_state import record_described
from pipelines.standardize.run import standardize_dataset
from pipelines.storage import atomic_write_table


@dg.multi_asset(
    specs=[
        dg.AssetSpec("slices", deps=["raw_samples"], group_name="standardize",
                     description="One row per 2D plane: canonical orientation, intensity transform, spacing, display "
                                 "size, pHash, contrast (no PNG unless standardize.write_pngs: all)."),
        dg.AssetSpec("regions", deps=["slices"], group_name="standardize",
                     description="One row per connected instance (mask RLE), box or whole image."),
    ],
    partitions_def=datasets_partitions,
    check_specs=[
        dg.AssetCheckSpec("standardize_quarantine", asset="slices",
                          description="samples that could not be standardized (grid mismatch, decode errors)"),
        dg.AssetCheckSpec("regions_inside_images", asset="regions",
                          description="every region's bbox lies inside its image; every region has an image"),
    ],
)
def standardized(context: dg.AssetExecutionContext, medbench: MedbenchResource):
    dataset_id = context.partition_key
    cfg = medbench.config
    layout = medbench.layout
    samples = layout.read("raw_samples", dataset_id)
    res = standardize_dataset(medbench.sources.get(dataset_id), cfg, samples, layout.root,
                              workers=cfg.standardize.workers)
    spath = atomic_write_table(res.slices, layout.table("slices", dataset_id))
    rpath = atomic_write_table(res.regions, layout.table("regions", dataset_id))
    qpath = atomic_write_table(res.quarantine, layout.quarantine("standardize", dataset_id))
    record_described(layout.root, dataset_id)
    by_axis = Counter(res.slices.column("axis").to_pylist())
    by_kind = Counter(res.regions.column("kind").to_pylist())
    yield dg.MaterializeResult(asset_key="slices", metadata={
        "slices": res.slices.num_rows, "by_axis": dg.MetadataValue.md(markdown_counts(by_axis, "axis")),
        "quarantined": res.quarantine.num_rows, "path": dg.MetadataValue.path(str(spath)),
        "pngs_written": sum(1 for p in res.slices.column("png_path").to_pylist() if p)})
    yield dg.MaterializeResult(asset_key="regions", metadata={
        "regions": res.regions.num_rows, "by_kind": dg.MetadataValue.md(markdown_counts(by_kind, "kind")),
        "dropped_small_masks": res.dropped_small, "path": dg.MetadataValue.path(str(rpath))})
    yield dg.AssetCheckResult(
        check_name="standardize_quarantine", asset_key="slices", passed=res.quarantine.num_rows == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"quarantined": res.quarantine.num_rows, "quarantine_path": dg.MetadataValue.path(str(qpath)),
                  "by_reason": dg.MetadataValue.md(markdown_counts(res.reason_counts))})
    r = res.regions
    bad = 0
    if r.num_rows:
        x0, y0 = pc.list_element(r["bbox"], 0), pc.list_element(r["bbox"], 1)
        x1, y1 = pc.list_element(r["bbox"], 2), pc.list_element(r["bbox"], 3)
        inside = pc.and_(pc.and_(pc.greater_equal(x0, 0), pc.greater_equal(y0, 0)),
                         pc.and_(pc.less_equal(x1, r["width"]), pc.less_equal(y1, r["height"])))
        bad = r.num_rows - pc.sum(pc.cast(inside, "int64")).as_py()
    orphans = len(set(r.column("image_id").to_pylist()) - set(res.slices.column("image_id").to_pylist()))
    yield dg.AssetCheckResult(check_name="regions_inside_images", asset_key="regions",
                              passed=bad == 0 and orphans == 0,
                              metadata={"outside": bad, "without_image": orphans})
