"""The benchmark on the demo data: caps, diversity, disjoint splits, exports round-trip, stable checksums."""

from __future__ import annotations

import base64
import hashlib
import io
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.conftest import built_config


@pytest.fixture(scope="module")
def built(demo_registry, tmp_path_factory):
    yield from built_config(demo_registry, tmp_path_factory.mktemp("bench"))


def _bench(cfg) -> pd.DataFrame:
    """The selected items with the image each one was rendered to (rendering comes after selection)."""
    bench = pd.read_parquet(cfg.data_root / "tables" / "benchmark.parquet")
    rendered = pd.read_parquet(cfg.data_root / "tables" / "rendered_items.parquet")[["item_id", "image_path"]]
    return bench.drop(columns="image_path").merge(rendered, on="item_id", how="left")


@pytest.mark.slow
def test_build_succeeds_and_caps_hold(built):
    cfg, report = built
    assert report.failed == []
    bench = _bench(cfg)
    cands = pd.read_parquet(cfg.data_root / "tables" / "qa_candidates.parquet")
    assert 0 < len(bench) < len(cands)
    originals = bench[bench["variant_of"].isna()]  # mirrored and perturbed copies repeat a selected unit
    units = originals.drop_duplicates("unit_id").assign(g=lambda d: d["granularity"].replace({"contour": "mask"}))
    per_answer = units.groupby(["clinical_vqa_task", "g", "answer_label"]).size()
    assert per_answer.max() <= cfg.benchmark.per_answer_cap
    # one patient (leakage component) gives a task at most per_component_task_cap units; on the demo, whose
    # datasets hold a few phantom patients each, this cap is the one that binds
    per_component = units.groupby(["split_group", "clinical_vqa_task"]).size()
    assert per_component.max() <= cfg.benchmark.per_component_task_cap
    assert (per_component == cfg.benchmark.per_component_task_cap).any() or (
        per_answer == cfg.benchmark.per_answer_cap).any()  # a cap bit somewhere
    assert set(bench["granularity"]) == {"image", "box", "mask", "contour"}
    recognition = originals[originals["generator"] == "recognition"]  # generated items are outlines only
    twins = recognition[recognition["granularity"].isin(["mask", "contour"])].groupby("unit_id")
    assert (twins.size() == 2).all() and (twins["A"].nunique() == 1).all() and (twins["answer"].nunique() == 1).all()
    # the twins' stems, against the cue words of templates/cues.yaml written out here: the contour stem never speaks
    # of a fill nor the mask stem of an outline; a stem with no fill cue ("the marked area") is the same for both,
    # and one with a fill cue has an outline cue in its contour twin instead
    import re
    fill = r"\b(shaded|shading|overlay|highlighted|filled|tinted|colou?red area)\b"
    line = r"\b(outlined|outline|contour|delineated|circled|encircled)\b"
    stems = twins.apply(lambda g: g.set_index("granularity")["question"].to_dict())
    for s in stems:
        assert not re.search(fill, s["contour"], re.IGNORECASE) and not re.search(line, s["mask"], re.IGNORECASE)
        if re.search(fill, s["mask"], re.IGNORECASE):
            assert re.search(line, s["contour"], re.IGNORECASE), s
        else:
            assert s["contour"] == s["mask"], s
    assert (twins["split"].nunique() == 1).all()
    assert bench["index"].is_unique


@pytest.mark.slow
def test_splits_disjoint_by_group(built):
    bench = _bench(built[0])
    assert (bench.groupby("group_id")["split"].nunique() == 1).all()
    assert (bench.groupby("image_id")["split"].nunique() == 1).all()
    assert set(bench["split"]) == {"val", "test"}


@pytest.mark.slow
def test_selection_is_more_diverse_than_random(built):
    from pipelines.select.units import Features, farthest_point, spread, unit_frame
    from pipelines.ids import seeded_order
    cfg = built[0]
    cands = pd.read_parquet(cfg.data_root / "tables" / "qa_candidates.parquet")
    group = unit_frame(cands[(cands["answer_label"] == "liver") & (cands["granularity"] == "mask")])
    group = group.iloc[np.argsort(seeded_order(group["unit_id"], cfg.seed, "fps"), kind="stable")]
    f = Features(group)
    assert len(f) > 60
    chosen = spread(f, farthest_point(f, 30))
    rng = np.random.default_rng(0)
    randoms = [spread(f, sorted(rng.choice(len(f), 30, replace=False).tolist())) for _ in range(20)]
    assert chosen > max(randoms)


@pytest.mark.slow
def test_parquet_round_trip_with_datasets(built):
    import datasets
    cfg = built[0]
    out = cfg.data_root / "benchmark"
    # a cache of its own: the shared ~/.cache may hold a stale entry for this same tmp path
    ds = datasets.load_dataset(str(out), cache_dir=str(cfg.data_root.parent / "hf_cache"))
    full = _bench(cfg).set_index("index")
    bench = full[full["subset"] == "main"]
    assert ds["val"].num_rows + ds["test"].num_rows == len(bench)
    robust = datasets.load_dataset(str(out), "robustness", cache_dir=str(cfg.data_root.parent / "hf_cache"))
    assert sum(split.num_rows for split in robust.values()) == int((full["subset"] == "robustness").sum()) > 0
    key = pd.read_parquet(out / "private" / "answer_key.parquet")
    assert set(key.loc[key["config"] == "robustness", "variant_of"]) <= set(ds["test"]["item_id"])
    row = ds["val"][0]
    src = np.asarray(Image.open(cfg.data_root / bench.loc[row["index"], "image_path"]).convert("RGB"))
    assert np.array_equal(np.asarray(row["image"].convert("RGB")), src)
    assert all(a is None for a in ds["test"]["answer"])  # the public test file carries no answer
    public = {"image", "index", "item_id", "question", "A", "B", "C", "D", "E", "answer", "multi_answer", "n_options",
              "clinical_vqa_task", "department", "perceptual_granularity", "modality", "original_task", "split",
              "dataset_id"}  # the allowlist, written out by hand
    for split in (ds["val"], ds["test"], robust["test"]):
        assert set(split.column_names) == public
    main_test = key[(key["config"] == "main") & (key["split"] == "test")]
    assert len(main_test) == ds["test"].num_rows
    assert key.loc[key["config"] != "grounding", "answer"].notna().all()
    assert key.loc[key["config"] == "grounding", "box"].map(len).eq(4).all()  # a box answers a grounding item
    assert key["index"].is_unique and len(key) == len(full)
    df = pd.read_parquet(out / "data")
    assert len(df) == len(bench)
    import pyarrow.parquet as pq
    for shard in sorted(out.rglob("data/*.parquet")):  # encoded once: each payload is the rendered file's bytes
        meta = pq.read_metadata(shard)
        assert all(meta.row_group(i).num_rows <= 256 for i in range(meta.num_row_groups))
        rows = pq.read_table(shard, columns=["image", "index"]).to_pylist()
        assert all(r["image"]["bytes"] == (cfg.data_root / full.loc[r["index"], "image_path"]).read_bytes()
                   for r in rows)


@pytest.mark.slow
def test_vlmevalkit_tsv_contract(built):
    cfg = built[0]
    tsv = cfg.data_root / "benchmark" / "tsv"
    bench = _bench(cfg).set_index("index")
    val = pd.read_csv(tsv / "medbench_VAL.tsv", sep="\t")  # VLMEvalKit reads with pandas defaults
    test = pd.read_csv(tsv / "medbench_TEST.tsv", sep="\t")
    assert "answer" in val.columns and "answer" not in test.columns
    for frame in (val, test):
        assert frame["index"].is_unique
        for col in ("category", "clinical VQA task", "department", "perceptual granularity"):
            assert frame[col].notna().all()
        opts = frame[list("ABCDE")]
        n = opts.notna().sum(axis=1)
        assert ((n >= 2) & (n <= 5)).all()
        # contiguous from A: no NaN before a filled letter
        assert all(list(r.notna()) == sorted(r.notna(), reverse=True) for _, r in opts.iterrows())
    for _, r in val.iterrows():
        assert isinstance(r[r["answer"]], str) and r[r["answer"]] == bench.loc[r["index"], r["answer"]]
        assert base64.b64decode(r["image"]) == (cfg.data_root / bench.loc[r["index"], "image_path"]).read_bytes()
        img = Image.open(io.BytesIO(base64.b64decode(r["image"])))
        assert np.array_equal(np.asarray(img.convert("RGB")),
                              np.asarray(Image.open(cfg.data_root / bench.loc[r["index"], "image_path"]).convert("RGB")))
    assert (test["category"] == test["clinical VQA task"]).all()  # category never holds the answer text
    multi = pd.read_csv(tsv / "medbench_MULTI_VAL.tsv", sep="\t")
    assert multi["answer"].str.contains(",").all()


def test_streamed_tsv_is_what_pandas_writes(tmp_path):
    """The TSV written row by row is byte for byte pandas.to_csv of the same frame (the format VLMEvalKit
    reads), whatever the texts hold: tabs, quotes, line breaks, empty and missing options."""
    import csv

    from pipelines.export.tsv import stream_tsv
    pngs = []
    for i in range(4):
        pngs.append(f"p{i}.png")
        (tmp_path / pngs[-1]).write_bytes(bytes(range(i, 200 + i)))
    frame = pd.DataFrame({"index": [3, 1, 7, 2], "image": pngs,
                          "question": ['a "quoted"\tstem', "two\nlines", "plain", ""],
                          "A": ["x", None, "none", "NA (text)"], "B": [None, None, "y", "z"],
                          "split": ["val", "val", "test", "test"], "size": [1.5, float("nan"), 2.0, 1e-7]})
    written = stream_tsv(tmp_path / "out.tsv", frame, tmp_path)
    want = frame.assign(image=[base64.b64encode((tmp_path / p).read_bytes()).decode("ascii") for p in pngs])
    buf = io.StringIO()
    want.to_csv(buf, sep="\t", index=False, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
    assert (tmp_path / "out.tsv").read_text(encoding="utf-8") == buf.getvalue()
    data = (tmp_path / "out.tsv").read_bytes()  # the facts taken while writing are the file's own
    assert written.facts == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    back = pd.read_csv(tmp_path / "out.tsv", sep="\t", dtype=str, keep_default_na=False).assign(image="")
    assert written.text.equals(back)  # the text columns exactly as a reader parses them back


def test_na_like_options_survive_pandas():
    from pipelines.export.tsv import safe_option
    frame = pd.DataFrame({"A": [safe_option("None")], "B": [safe_option("NA")], "C": [safe_option("nan")]})
    back = pd.read_csv(io.StringIO(frame.to_csv(sep="\t", index=False)), sep="\t")
    assert back.notna().all().all()


@pytest.mark.slow
def test_exports_are_checksummed_and_stable(built):
    cfg = built[0]
    from cli.build import build, export_config_env
    export_config_env(cfg, None)  # the autouse fixture clears MEDBENCH_* between tests
    manifest1 = json.loads((cfg.data_root / "benchmark" / "manifest.json").read_text())
    report = build(cfg, select=["benchmark", "benchmark_exports"], log=lambda m: None)
    assert report.failed == []
    manifest2 = json.loads((cfg.data_root / "benchmark" / "manifest.json").read_text())
    assert manifest1 == manifest2
    import hashlib
    for rel, meta in manifest2["files"].items():
        assert hashlib.sha256((cfg.data_root / "benchmark" / rel).read_bytes()).hexdigest() == meta["sha256"]
    # the settings that change outputs, hashed as the manifest documents it (paths, publishing and worker counts
    # left out)
    payload = cfg.model_dump(mode="json", exclude={"registry": True, "data_root": True, "publish": True,
                                                   "changes": True, "ingest": {"data_dirs", "workers"},
                                                   "llm": {"cache_dir"}, "standardize": {"workers"},
                                                   "benchmark": {"render_workers"}, "annotate": {"workers"},
                                                   "generators": {"workers"}})
    want = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]
    assert manifest2["config_fingerprint"] == want


@pytest.mark.slow
def test_audit_checks_ran_in_dagster(built):
    import dagster as dg

    from pipelines.config import RULE_NAMES
    instance = dg.DagsterInstance.get()
    keys = [dg.AssetCheckKey(dg.AssetKey(a), n) for a, n in
            [("benchmark", "split_disjoint"), ("benchmark", "no_related_option"), ("benchmark", "no_cross_modality_option"),
             ("label_vocab", "unresolved_labels"), ("benchmark", "duplicate_options"),
             ("benchmark", "answer_among_distractors"), ("benchmark", "stem_contains_option"),
             ("rendered_items", "every_item_rendered"), ("benchmark_exports", "exported_images_readable")]
            + [("candidate_gates", f"gate_{r}") for r in RULE_NAMES]]
    latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(keys)
    assert set(latest) == set(keys)
    for key, record in latest.items():
        assert record.event.asset_check_evaluation.passed, key
