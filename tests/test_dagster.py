"""The Dagster layer: definitions load, the demo graph materializes, the sensor tracks changes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import dagster as dg
import datasets
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.config import PROJECT_ROOT, PipelineConfig
from tests.conftest import private_registry


def test_definitions_load_and_validate():
    from assets.definitions import defs
    dg.Definitions.validate_loadable(defs)
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"raw_samples", "slices", "regions", "qa_candidates", "candidate_gates", "benchmark", "rendered_items",
            "review_sheets", "benchmark_exports"} <= keys
    groups = {k.to_user_string(): g for k, g in defs.resolve_asset_graph().get_all_asset_keys_to_group_names().items()} \
        if hasattr(defs.resolve_asset_graph(), "get_all_asset_keys_to_group_names") else None
    if groups:
        assert groups["slices"] == "describe" and groups["candidate_gates"] == "gate" and groups["benchmark"] == "select"
    assert defs.resolve_job_def("dataset_job") is not None


def test_dagster_cli_validates_definitions(dagster_home):
    """The same check `dagster definitions validate` runs, through the real CLI and pyproject."""
    exe = os.path.join(os.path.dirname(sys.executable), "dagster")
    proc = subprocess.run([exe, "definitions", "validate"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dg_cli_loads_the_medbench_location(dagster_home):
    """`dg` finds the project through [tool.dg] in pyproject (what `dg dev` loads, with no flags)."""
    exe = os.path.join(os.path.dirname(sys.executable), "dg")
    proc = subprocess.run([exe, "check", "defs"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "loaded successfully" in proc.stdout + proc.stderr, proc.stdout + proc.stderr


@pytest.mark.slow
def test_demo_build_end_to_end(demo_config, dagster_home):
    from cli.build import build, export_config_env
    export_config_env(demo_config, None)
    demo_config = demo_config.model_copy(  # the ROI annotations are opt-in: switch them on here (every image)
        update={"annotate": demo_config.annotate.model_copy(update={"enabled": True, "export_images": "all"})})
    report = build(demo_config, log=lambda m: None)
    assert report.failed == [] and len(report.succeeded) == 9  # 8 dataset partitions + the global stages
    root = demo_config.data_root / "tables"
    samples = {p.stem: pq.read_table(p).num_rows for p in (root / "raw_samples").glob("*.parquet")}
    assert samples == {"demo_blood_smear": 8, "demo_ct_abdomen": 3, "demo_ct_dicom": 1, "demo_cxr_findings": 12,
                       "demo_cxr_pneumonia": 16, "demo_derm_npz": 16, "demo_mr_brain": 1, "demo_polyp": 8}
    slices = {p.stem: pq.read_table(p) for p in (root / "slices").glob("*.parquet")}
    regions = {p.stem: pq.read_table(p) for p in (root / "regions").glob("*.parquet")}
    assert set(slices) == set(regions) == set(samples)
    for ds, t in slices.items():
        assert t.num_rows > 0, ds
        assert set(t.column("png_path").to_pylist()) == {""}  # describe writes rows, not PNGs
    assert {k for t in regions.values() for k in t.column("kind").to_pylist()} == {"image", "box", "mask"}
    # PNGs exist only for what is exported (plus one review sheet per dataset with items)
    bench = pq.read_table(root / "benchmark.parquet").to_pandas()
    rendered = pq.read_table(root / "rendered_items.parquet").to_pandas()
    assert set(rendered["item_id"]) == set(bench["item_id"])
    assert {g for g in bench["granularity"]} == {"image", "box", "mask", "contour"}
    pngs = [p for p in demo_config.data_root.rglob("*.png") if "benchmark" not in p.parts]
    sheets = sorted((demo_config.data_root / "review").glob("*.png"))
    assert len(sheets) == bench["dataset_id"].nunique()
    assert len(pngs) <= 1.2 * len(bench) + len(sheets)
    for rel in rendered["image_path"]:
        assert (demo_config.data_root / rel).read_bytes()[:4] == b"\x89PNG"
    instance = dg.DagsterInstance.get()
    sheet_ev = instance.get_latest_materialization_event(dg.AssetKey("review_sheets"))
    md = sheet_ev.asset_materialization.metadata["sheets_preview"].value
    assert "![contact sheet" in md and "data:image/jpeg;base64," in md  # thumbnails, with links to the files
    assert len(md) < 100_000 * len(sheets) and "file://" in md
    checks = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [dg.AssetCheckKey(dg.AssetKey("regions"), "regions_inside_images")])
    assert checks, "the regions check ran"
    assert sorted(instance.get_dynamic_partitions("datasets")) == sorted(samples)
    # the demo shows success: every dataset yields items (the brain MR and the CT slice only grounding items: their
    # few multiple-choice units have too few of each key to keep the key balanced), the summary names no error
    assert set(bench["dataset_id"]) == set(samples)
    assert set(bench.loc[bench["subset"] == "main", "dataset_id"]) >= set(samples) - {"demo_mr_brain", "demo_ct_dicom"}
    from pipelines.summary import summarize
    assert "ERROR" not in summarize(demo_config.data_root, sorted(samples), demo_config.gates).render()
    latest = {}
    for rec in instance.get_event_records(dg.EventRecordsFilter(dg.DagsterEventType.ASSET_CHECK_EVALUATION)):
        ev = rec.event_log_entry.dagster_event.event_specific_data
        latest.setdefault((ev.asset_check_key, ev.partition), ev)  # records come newest first
    assert latest and not [k for k, ev in latest.items() if not ev.passed and ev.severity == dg.AssetCheckSeverity.ERROR]
    from assets.validity import DESCRIPTIONS
    assert {k.name for k, _ in latest if k.asset_key == dg.AssetKey("benchmark_exports")} >= set(DESCRIPTIONS)
    # the export checks share one step, yet each still runs alone (the UI's "execute" on one check)
    from assets.definitions import ALL_ASSETS, ALL_CHECKS, defs
    one = dg.AssetCheckKey(dg.AssetKey("benchmark_exports"), "key_priors_within_margin")
    alone = dg.materialize([*ALL_ASSETS, *ALL_CHECKS], selection=dg.AssetSelection.checks(one), instance=instance,
                           resources=defs.resources)
    assert [(e.check_name, e.passed) for e in alone.get_asset_check_evaluations()] == [(one.name, True)]
    # a check that raises fails the step, naming itself, after the other checks' results are recorded
    from pipelines.validity import exported as ex
    other = dg.AssetCheckKey(dg.AssetKey("benchmark_exports"), "val_split_is_usable")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ex, "modal_keys", lambda *a, **k: 1 / 0)
        broken = dg.materialize([*ALL_ASSETS, *ALL_CHECKS], selection=dg.AssetSelection.checks(one, other),
                                instance=instance, resources=defs.resources, raise_on_error=False)
    assert not broken.success
    assert [e.check_name for e in broken.get_asset_check_evaluations()] == [other.name]
    error, messages = broken.get_step_failure_events()[0].event_specific_data.error, []
    while error is not None:
        messages.append(error.message)
        error = error.cause
    assert any("check key_priors_within_margin could not judge the export: ZeroDivisionError" in m for m in messages)
    vocab = pq.read_table(root / "label_vocab.parquet").to_pandas()
    assert set(vocab["dataset_id"]) == set(samples) and (vocab["status"] != "unresolved").all()
    assert (demo_config.data_root / "lexical_tree" / "vocabulary_tree.html").exists()
    qa = pq.read_table(root / "qa_candidates.parquet").to_pandas()
    assert set(qa["granularity"]) == {"image", "box", "mask", "contour"} and (qa["answers"].map(len) > 1).any()
    ev = instance.get_latest_materialization_event(dg.AssetKey("raw_samples"))
    assert ev is not None
    # ROI annotations: every named region and every image annotated; the public config holds only images no
    # test item is linked to, with decoded images; the exam's annotations stay private
    ann = pq.read_table(root / "roi_annotations.parquet").to_pandas()
    named = set(vocab.loc[vocab["status"].isin(["mesh", "no_mesh"]), "raw_label"])
    all_regions = pa.concat_tables(list(regions.values())).to_pandas()
    expected = all_regions["labels"].map(lambda labs: all(lab in named for lab in labs)).sum()
    assert (ann["scope"] == "roi").sum() == expected
    assert (ann["scope"] == "image").sum() == sum(t.num_rows for t in slices.values())
    out = demo_config.data_root / "benchmark"
    roi = datasets.load_dataset(str(out), "roi_annotations", cache_dir=str(demo_config.data_root / "hf_cache"))
    assert set(roi) == {"train"} and roi["train"].num_rows > 0
    first = roi["train"][0]
    assert first["image"].size == (first["width"], first["height"]) and first["rois"] is not None
    private = pq.read_table(out / "private" / "roi_annotations.parquet").to_pandas()
    test_images = set(bench.loc[bench["split"] == "test", "image_id"])
    assert test_images & set(ann["image_id"]) <= set(private["image_id"])
    assert not set(roi["train"]["image_id"]) & (test_images | set(private["image_id"]))
    checks = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [dg.AssetCheckKey(dg.AssetKey("roi_exports"), "roi_public_not_in_exam"),
         dg.AssetCheckKey(dg.AssetKey("roi_annotations"), "position_words_match_bbox"),
         dg.AssetCheckKey(dg.AssetKey("roi_annotations"), "counts_only_for_exhaustive_labels"),
         dg.AssetCheckKey(dg.AssetKey("roi_annotations"), "names_only_for_named_labels")])
    assert len(checks) == 4 and all(c.status.value == "SUCCEEDED" for c in checks.values()), checks
    # the check fails on a planted test image: its pixels under a fresh id, or under its own id
    from pipelines.annotate.export import read_public, render_images
    from pipelines.annotate.leak import exam_images, published_leaks
    from pipelines.sources.registry import load_registry
    planes = pd.concat([t.to_pandas()[["image_id", "group_id", "sha256", "phash"]] for t in slices.values()])
    full_bench = pq.read_table(root / "benchmark.parquet").to_pandas()
    exam = exam_images(full_bench, planes)
    public = read_public(out)
    bits = demo_config.benchmark.near_duplicate_bits
    assert published_leaks(public, planes, exam, bits).empty
    # the same, re-derived from the tables alone: no public image shares a plane's pixels (sha256) with an image
    # a test item shows
    sha_of = planes.drop_duplicates("image_id").set_index("image_id")["sha256"]
    test_sha = set(sha_of.reindex(list(test_images)).dropna()) - {""}
    assert not set(sha_of.reindex(public["image_id"].tolist()).dropna()) & test_sha
    item = full_bench[full_bench["split"] == "test"].iloc[0]
    ds = item["dataset_id"]
    sample_id = slices[ds].to_pandas().set_index("image_id").loc[item["image_id"], "sample_id"]
    png = render_images(pd.DataFrame([{"dataset_id": ds, "sample_id": sample_id, "image_id": item["image_id"]}]),
                        load_registry(demo_config.registry),
                        {ds: pq.read_table(root / "raw_samples" / f"{ds}.parquet").to_pandas()},
                        {ds: slices[ds].to_pandas()}, demo_config)[item["image_id"]]
    planted = pd.concat([public, pd.DataFrame([{"image_id": "planted", "png": png},
                                               {"image_id": item["image_id"], "png": png}])])
    found = published_leaks(planted, planes, exam, bits).set_index("image_id")["reason"].to_dict()
    assert found == {"planted": "pixel-identical to a test image", item["image_id"]: "test image"}
    # a re-run writes byte-identical tables
    before = {p.name: p.read_bytes() for p in (root / "raw_samples").glob("*.parquet")}
    build(demo_config, select=["raw_samples"], datasets=["demo_polyp", "demo_ct_abdomen"], log=lambda m: None)
    after = {p.name: p.read_bytes() for p in (root / "raw_samples").glob("*.parquet")}
    assert before == after


def _drop_from_registry(reg, dataset_id: str) -> None:
    import yaml
    doc = yaml.safe_load(reg.read_text())
    doc["datasets"] = [d for d in doc["datasets"] if d["id"] != dataset_id]
    reg.write_text(yaml.safe_dump(doc))


def test_sensor_adds_partitions_and_reruns_only_changed(demo_registry, tmp_path, monkeypatch, demo_sources):
    from assets.definitions import defs
    reg = private_registry(demo_registry, tmp_path, ("demo_polyp", "demo_cxr_pneumonia"))
    monkeypatch.setenv("MEDBENCH_REGISTRY", str(reg))
    monkeypatch.setenv("MEDBENCH_DATA_ROOT", str(tmp_path / "data"))
    sensor = defs.resolve_sensor_def("source_registry_sensor")
    with dg.instance_for_test() as instance:
        ctx = dg.build_sensor_context(instance=instance, cursor=None)
        first = sensor(ctx)
        assert sorted(r.partition_key for r in first.run_requests) == ["demo_cxr_pneumonia", "demo_polyp"]
        assert first.dynamic_partitions_requests[0].partition_keys == ["demo_cxr_pneumonia", "demo_polyp"]
        instance.add_dynamic_partitions("datasets", ["demo_cxr_pneumonia", "demo_polyp"])
        second = sensor(dg.build_sensor_context(instance=instance, cursor=first.cursor))
        assert isinstance(second, dg.SkipReason)  # requested, not yet materialized: not asked twice
        img = next((tmp_path / "polyp_phantom" / "images").iterdir())
        img.write_bytes(img.read_bytes() + b"\0")
        third = sensor(dg.build_sensor_context(instance=instance, cursor=first.cursor))
        assert [r.partition_key for r in third.run_requests] == ["demo_polyp"]
        assert third.dynamic_partitions_requests == []
        assert json.loads(third.cursor).keys() == {"demo_cxr_pneumonia", "demo_polyp"}


@pytest.mark.slow
def test_change_detection_on_a_built_instance(demo_registry, tmp_path, monkeypatch, dagster_home, demo_sources):
    """Build once; then the sensor's first tick and a second build do nothing, a touch does nothing,
    a content change re-runs exactly that dataset, and a removed dataset loses partition and outputs."""
    from cli.build import build
    from assets.definitions import defs
    reg = private_registry(demo_registry, tmp_path, ("demo_polyp", "demo_cxr_pneumonia"))
    data = tmp_path / "data"
    for var, value in (("MEDBENCH_REGISTRY", reg), ("MEDBENCH_DATA_ROOT", data)):
        monkeypatch.setenv(var, str(value))
    cfg = PipelineConfig.load()
    assert build(cfg, log=lambda m: None).succeeded == ["demo_cxr_pneumonia", "demo_polyp", "global"]
    instance = dg.DagsterInstance.get()
    n_runs = len(instance.get_run_records())
    assert build(cfg, log=lambda m: None).succeeded == []  # nothing changed: no run at all
    assert len(instance.get_run_records()) == n_runs
    sensor = defs.resolve_sensor_def("source_registry_sensor")
    tick = sensor(dg.build_sensor_context(instance=instance, cursor=None))
    assert isinstance(tick, dg.SkipReason), "first tick starts from what is materialized"
    img = sorted((tmp_path / "polyp_phantom" / "images").iterdir())[0]
    os.utime(img, ns=(img.stat().st_atime_ns, img.stat().st_mtime_ns + 10**9))  # touch: same content
    assert isinstance(sensor(dg.build_sensor_context(instance=instance, cursor=None)), dg.SkipReason)
    schedule = defs.resolve_schedule_def("source_registry_schedule")
    assert isinstance(schedule(dg.build_schedule_context(instance=instance)), dg.SkipReason)
    img.write_bytes(img.read_bytes() + b"\0")
    tick = sensor(dg.build_sensor_context(instance=instance, cursor=None))
    assert [r.partition_key for r in tick.run_requests] == ["demo_polyp"]
    assert [r.partition_key for r in schedule(dg.build_schedule_context(instance=instance))] == ["demo_polyp"]
    # the cross-dataset assets follow a per-dataset run through their automation condition
    from assets.definitions import GLOBAL_KEYS, PER_DATASET_KEYS
    baseline = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    assert baseline.total_requested == 0
    assert build(cfg, select=[k.to_user_string() for k in PER_DATASET_KEYS], datasets=["demo_polyp"],
                 log=lambda m: None).succeeded == ["demo_polyp"]
    after = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=baseline.cursor)
    assert {k for k in GLOBAL_KEYS if after.get_num_requested(k)} == set(GLOBAL_KEYS)
    assert build(cfg, log=lambda m: None).succeeded == ["global"]
    assert "demo_cxr_pneumonia" in set(pq.read_table(data / "tables" / "benchmark.parquet").column("dataset_id").to_pylist())
    # the sensor drops a removed dataset: partition delete request, outputs gone, global rebuild requested
    _drop_from_registry(reg, "demo_cxr_pneumonia")
    tick = sensor(dg.build_sensor_context(instance=instance, cursor=None))
    assert tick.dynamic_partitions_requests[0].partition_keys == ["demo_cxr_pneumonia"]
    assert [(r.partition_key, r.tags["medbench/reason"]) for r in tick.run_requests] == [(None, "removed")]
    assert not list(data.rglob("demo_cxr_pneumonia*")) and not (data / "images" / "demo_cxr_pneumonia").exists()
    # build does the same and rebuilds the benchmark without it
    assert build(cfg, log=lambda m: None).succeeded == ["global"]
    assert instance.get_dynamic_partitions("datasets") == ["demo_polyp"]
    vocab = pq.read_table(data / "tables" / "label_vocab.parquet").to_pandas()
    assert set(vocab["dataset_id"]) == {"demo_polyp"}
    assert "demo_cxr_pneumonia" not in set(pq.read_table(data / "tables" / "benchmark.parquet").column("dataset_id").to_pylist())
    assert build(cfg, log=lambda m: None, force=True, workers=2).succeeded == ["demo_polyp", "global"]


def test_asset_attributes_applied_over_the_lists():
    """Every asset gets code version, owners, kinds; cross-dataset ones an automation condition;
    LLM steps a retry policy and the `llm` pool; every check a description."""
    from assets.automation import LLM_ASSETS, LLM_POOL
    from assets.definitions import GLOBAL_KEYS, defs
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.code_version and node.owners and "parquet" in node.kinds, key
        assert (node.automation_condition is not None) == (key in GLOBAL_KEYS), key
    for check in graph.asset_check_keys:
        assert graph.get_check_spec(check).description, check
    job = defs.resolve_job_def("global_job")
    for name in LLM_ASSETS:
        node = job.graph.node_named(name)
        assert node.definition.pool == LLM_POOL and node.definition.retry_policy.max_retries >= 1
    sensor, automation = defs.resolve_sensor_def("source_registry_sensor"), defs.resolve_sensor_def("medbench_automation")
    schedule = defs.resolve_schedule_def("source_registry_schedule")
    assert sensor.default_status == automation.default_status == dg.DefaultSensorStatus.STOPPED
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED and schedule.cron_schedule == "0 3 * * *"
