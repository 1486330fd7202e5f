"""Reader-trust rules judged from the exported files (pipelines/validity/exported.py): each rule passes on a clean
export written by the real exporter and fails on a planted bad item; on the ../shared build every rule is
re-derived from the exported files."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipelines import PIPELINE_VERSION
from pipelines.config import PipelineConfig
from pipelines.imageio import mirror_key
from pipelines.validity import exported as ex
from tests.conftest import needs_shared
from pipelines.records import LETTERS

LABELS = ["liver", "spleen", "kidney", "pancreas", "stomach", "aorta"]


def synthetic_items(root: Path, n: int = 80, seed: int = 0) -> pd.DataFrame:
    """Main items with balanced keys, random options and one real PNG each (a distinct random image)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        path = f"rendered/ds/item_{i:03d}.png"
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(root / path)
        k = 3 + i % 2
        opts = [LABELS[j] for j in rng.permutation(len(LABELS))[:k]]
        key = LETTERS[(i // 2) % k]  # balanced letters per option count, as assembly places them
        rows.append({"index": i, "item_id": f"item{i:04d}", "unit_id": f"unit{i:04d}",
                     "question": "Which organ is outlined in this CT image?",
                     **{c: (opts[j] if j < k else None) for j, c in enumerate(LETTERS)}, "answer": key,
                     "answer_label": opts[LETTERS.index(key)], "multi_answer": False, "n_options": k,
                     "clinical_vqa_task": "Organ Recognition - Abdomen", "department": "Gastroenterology and Hepatology",
                     "perceptual_granularity": "Contour level", "granularity": "contour", "modality": "CT",
                     "gmai_modality": "CT", "original_task": "SEG_3D", "semantic_type": "organ",
                     "group_id": f"g{i:03d}", "split_group": f"g{i:03d}", "image_id": f"img{i:04d}",
                     "prompt_id": f"p{i:04d}", "image_path": path, "template_id": "t", "pool_size": 6,
                     "split": "val" if i % 5 == 0 else "test", "dataset_id": "demo_ct_abdomen",
                     "source_path": f"src/{i}.nii.gz", "pipeline_version": PIPELINE_VERSION, "seed": 1,
                     "subset": "main", "variant_of": None, "variant": None, "generator": "recognition",
                     "generator_params": json.dumps({"answer": opts[LETTERS.index(key)]}),
                     "source_region_ids": [f"r{i}"], "option_origins": ["dataset"] * k, "box": None})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def export(demo_registry, tmp_path_factory):
    from pipelines.export.run import export_all
    root = tmp_path_factory.mktemp("trust") / "data"
    cfg = PipelineConfig.load(registry=demo_registry, data_root=root)
    export_all(synthetic_items(root), {"analytic_chance": 0.3}, root, root / "benchmark", cfg)
    return root / "benchmark"


@pytest.fixture()
def copy(export, tmp_path):
    return shutil.copytree(export, tmp_path / "benchmark")


def _rewrite(out: Path, change, only: str = "") -> None:
    """Apply ``change`` (a function of the public DataFrame, images included) to every main shard (of one split)."""
    for f in sorted((out / "data").glob(f"{only}*.parquet")):
        t = pq.read_table(f)
        df = change(t.to_pandas())
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), f)


def test_a_leaky_public_column_is_caught(copy):
    clean = ex.column_leaks(copy)
    assert clean["leaking"] == [] and set(clean["columns"]) >= {"question", "dataset_id", "modality", "department"}
    key = pd.read_parquet(copy / "private" / "answer_key.parquet").set_index("index")
    # the old generator_params column: the computed answer, in public
    _rewrite(copy, lambda df: df.assign(generator_params=[json.dumps({"answer": key.at[i, "answer_label"]})
                                                          for i in df["index"]]))
    leaky = ex.column_leaks(copy)
    assert leaky["leaking"] == ["generator_params"]
    assert leaky["columns"]["generator_params"]["alone"] > 0.9


def test_the_column_check_cut_into_jobs_reports_what_one_job_does(export):
    """The check's columns dealt over jobs (each building its own option rows and folds) give the report of one job
    scoring every column: how the columns are dealt never changes a figure."""
    whole = ex.column_leaks(export)
    plan = ex.column_jobs(export, parts=4)
    assert len(plan.jobs) == 4 and sorted(map(str, plan.judged)) == sorted(["None", *whole["columns"]])
    assert plan.report([fn(*args) for fn, args in plan.jobs]) == whole


def test_a_constant_key_task_is_caught(copy):
    assert ex.modal_keys(copy)["over"] == []
    key = pd.read_parquet(copy / "private" / "answer_key.parquet").set_index("index")

    def constant(df):  # every item's key text becomes "liver": the key is known without the image
        for col in LETTERS:
            df.loc[df[col] == "liver", col] = "spleen-x"
        right = [key.at[i, "answer"] for i in df["index"]]
        for r, letter in zip(df.index, right):
            df.at[r, letter] = "liver"
        return df
    _rewrite(copy, constant)
    assert ex.modal_keys(copy)["over"] == ["Organ Recognition - Abdomen / demo_ct_abdomen"]


def test_a_mirrored_main_image_is_caught(copy):
    assert ex.mirrored_in_main(copy)["items"] == 0

    def mirror(df):
        first = np.asarray(Image.open(io.BytesIO(df.at[0, "image"]["bytes"])).convert("RGB"))
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(first[:, ::-1])).save(buf, format="PNG")
        df.at[1, "image"] = {"bytes": buf.getvalue(), "path": "x.png"}
        df.at[2, "question"] = "This image has been mirrored left to right. Which organ is outlined?"
        return df
    rendered = {}  # what the render step records: sha256 of each PNG file -> its mirror key, before the change
    for f in sorted((copy / "data").glob("*.parquet")):
        for cell in pq.read_table(f, columns=["image"])["image"].to_pylist():
            rendered[hashlib.sha256(cell["bytes"]).hexdigest()] = \
                mirror_key(np.asarray(Image.open(io.BytesIO(cell["bytes"])).convert("RGB")))
    _rewrite(copy, mirror, "test")
    r = ex.mirrored_in_main(copy)
    assert r["items"] == 3  # the mirrored pair (both images mirror each other) and the stem that says so
    # with the render step's keys: the mirrored image is no rendered file, so it is decoded and still caught
    assert ex.mirrored_in_main(copy, rendered_keys=rendered) == r


def test_copies_of_one_image_are_no_mirrors_until_its_mirror_joins_them(copy):
    """Two items showing one image file are not a mirrored pair (nothing to decode); once a third item shows that
    image mirrored, all three are (each copy's mirror is in the export)."""
    def same_file(df):
        df.at[1, "image"] = dict(df.at[0, "image"])
        return df
    _rewrite(copy, same_file, "test")
    assert ex.mirrored_in_main(copy)["items"] == 0

    def plus_mirror(df):
        first = np.asarray(Image.open(io.BytesIO(df.at[0, "image"]["bytes"])).convert("RGB"))
        assert not np.array_equal(first, first[:, ::-1])  # not symmetric: its mirror is another image
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(first[:, ::-1])).save(buf, format="PNG")
        df.at[2, "image"] = {"bytes": buf.getvalue(), "path": "x.png"}
        return df
    _rewrite(copy, plus_mirror, "test")
    r = ex.mirrored_in_main(copy)
    shards = sorted((copy / "data").glob("test*.parquet"))
    first_rows = pq.read_table(shards[0], columns=["index"])["index"].to_pylist()[:3]
    assert r["items"] == 3 and r["examples"] == sorted(first_rows)


def test_mirror_key_is_shared_with_the_mirror_only():
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    assert mirror_key(img) == mirror_key(img[:, ::-1]) == mirror_key(img[..., ::-1])  # any channel order
    assert len({mirror_key(img), mirror_key(img[::-1]), mirror_key(img.transpose(1, 0, 2)),
                mirror_key(np.roll(img, 1, axis=0))}) == 4
    assert mirror_key(img[..., 0]) == mirror_key(img[:, ::-1, 0])  # grey


def test_same_source_duplicates_are_counted(copy):
    def relabel(df):  # half the images come back under a second identity
        df.loc[df["index"] % 2 == 1, "dataset_id"] = "twin"
        df.at[1, "image"] = df.at[0, "image"]
        return df
    _rewrite(copy, relabel)
    assert ex.same_source_duplicates(copy, [("demo_ct_abdomen", "other")], 4)["pairs"] == 0
    assert ex.same_source_duplicates(copy, [("demo_ct_abdomen", "twin")], 4)["pairs"] >= 1


def test_val_split_share_and_coverage(copy):
    r = ex.val_split(copy, (0.15, 0.25), 30)
    assert r["val_share"] == 0.2 and r["in_range"] and r["missing"] == []  # 16 of 80 by construction
    _rewrite(copy, lambda df: df.assign(split="test"))
    r = ex.val_split(copy, (0.15, 0.25), 30)
    assert not r["in_range"] and "clinical_vqa_task=Organ Recognition - Abdomen" in r["missing"]
    # the same items all from one patient: no patient-disjoint split can give them val items, so they are named apart
    key_file = copy / "private" / "answer_key.parquet"
    pd.read_parquet(key_file).assign(split_group="g000").to_parquet(key_file)
    r = ex.val_split(copy, (0.15, 0.25), 30)
    assert r["missing"] == [] and "clinical_vqa_task=Organ Recognition - Abdomen" in r["one_component"]


def test_card_declares_only_what_loads(copy):
    assert ex.card_matches_files(copy)["problems"] == []
    for f in (copy / "data").glob("val-*.parquet"):
        f.unlink()
    problems = ex.card_matches_files(copy)["problems"]
    assert any("default/val" in p for p in problems)
    (copy / "tsv" / "medbench_VAL.tsv").write_text("")
    assert any("medbench_VAL.tsv" in p for p in ex.card_matches_files(copy)["problems"])


@needs_shared
@pytest.mark.slow
def test_shared_export_is_trustworthy(shared_build):
    """On the ../shared build, every rule re-derived from the exported files."""
    out = shared_build.data_root / "benchmark"
    b = shared_build.benchmark
    leaks = ex.column_leaks(out)
    assert leaks["leaking"] == [], leaks
    keys = ex.modal_keys(out, b.key_balance_margin, 30)
    assert keys["over"] == [], keys
    assert ex.mirrored_in_main(out)["items"] == 0
    pairs = [("pyradiomics_mr_nifti", "pyradiomics_mr_nrrd"), ("dcmqi_ct_seg", "dcmqi_ct_series_nrrd"),
             ("pneumoniamnist_csv", "pneumoniamnist_npz")]  # registrations reading one folder, written out by hand
    assert ex.same_source_duplicates(out, pairs, b.near_duplicate_bits)["pairs"] == 0
    assert ex.card_matches_files(out)["problems"] == []
    blind = ex.text_only(out, b, shared_build.seed)
    assert blind["exceeds"] == [], blind


@pytest.mark.slow
def test_shared_unmarked_findings_stand_out(shared_build):
    """Each quadrant or grounding item about a finding (a tumour, a cell) on a volume plane is re-measured here
    from its rendered image, with the region's mask scaled to the display: the finding's mean grey level differs
    from that of a 3-px band around it by at least 1.0 band standard deviation (the build's floor is 1.5 on the
    native plane; display resampling moves it a little). The brain-tumour items a reviewer could not see measured
    0.1 to 1.2. The volume datasets of ../shared still yield such items (the rule does not empty them)."""
    from pycocotools import mask as cocomask
    from scipy import ndimage
    root = shared_build.data_root
    items = pd.read_parquet(root / "tables" / "benchmark.parquet")
    rendered = pd.read_parquet(root / "tables" / "rendered_items.parquet").set_index("item_id")
    regions = pd.concat([pd.read_parquet(f) for f in sorted((root / "tables" / "regions").glob("*.parquet"))])
    slices = pd.concat([pd.read_parquet(f) for f in sorted((root / "tables" / "slices").glob("*.parquet"))])
    on_volume = set(slices.loc[slices["axis"] != "2d", "image_id"])
    regions = regions.set_index("region_id")
    asked = items[items["generator"].isin(["coarse_position", "grounding"])
                  & items["semantic_type"].isin(shared_build.gates.finding_types)]
    measured = []
    for item in asked.itertuples():
        (rid,) = item.source_region_ids
        r = regions.loc[rid]
        if r["image_id"] not in on_volume:
            continue
        shown = np.asarray(Image.open(root / rendered.loc[item.item_id, "image_path"]).convert("L"), float)
        mask = cocomask.decode({"size": [int(r["height"]), int(r["width"])], "counts": r["mask_rle"].encode()})
        mask = np.asarray(Image.fromarray(mask * 255).resize(shown.shape[::-1], Image.NEAREST)) > 0
        band = ndimage.binary_dilation(mask, iterations=3) & ~mask
        measured.append(abs(shown[mask].mean() - shown[band].mean()) / shown[band].std())
    assert measured, "no finding on a volume plane was asked about: the rule emptied the MR tumour dataset"
    assert min(measured) >= 1.0, sorted(measured)[:10]


@needs_shared
@pytest.mark.slow
def test_removing_a_dataset_leaves_the_others_items_and_keys(shared_build, tmp_path):
    """Selection, key balance, letters and blind drops work per dataset: rebuilding the benchmark from the ../shared
    candidates without bccd_voc leaves every other dataset's item ids, options and keys as they were, except where
    a cross-dataset rule binds (the cap per answer, task-wide key balance, the cross-dataset blind pass), and each
    of those is named as such."""
    from assets.select import plane_hashes
    from pipelines.select.build import build_benchmark
    from pipelines.candidates.options import pools_from_table
    from pipelines.sources.registry import registry_of
    from pipelines.storage import DataLayout
    from pipelines.vocab.frame import vocab_frame
    layout = DataLayout(shared_build.data_root)
    ids = [p.stem for p in sorted((layout.root / "tables" / "slices").glob("*.parquet"))]
    cands = pq.read_table(layout.table("qa_candidates"))
    verdicts = layout.read("gate_verdicts").to_pandas()
    vocab = vocab_frame(layout.read("label_vocab"))
    templates = layout.read("question_templates").to_pandas()
    pools = pools_from_table(layout.read("option_pools").to_pandas())

    def build(drop: str | None):
        keep = [d for d in ids if d != drop]
        path = tmp_path / f"cands_{drop}.parquet"
        pq.write_table(cands.filter(pa.compute.is_in(cands["dataset_id"], pa.array(keep))), path)
        v = vocab[vocab["dataset_id"].isin(keep)]
        p = {k: lab for k, lab in pools.items() if k.scope != f"dataset:{drop}"}
        kinds = {d: registry_of(shared_build).get(d).entry.task_type for d in keep}
        built = build_benchmark(path, verdicts, v, templates, p, shared_build, plane_hashes(layout, keep, kinds))
        t = built.table.to_pandas()
        return t[t["subset"] == "main"].set_index("item_id"), built.fates

    (full, full_fates), (without, without_fates) = build(None), build("bccd_voc")
    others = full[full["dataset_id"] != "bccd_voc"]
    across = {"cross_dataset_cap", "key_balance_task", "text_only_global"}
    gone = others.loc[sorted(set(others.index) - set(without.index)), "unit_id"]
    came = without.loc[sorted(set(without.index) - set(others.index)), "unit_id"]
    assert all(without_fates.get(u) in across for u in gone), {u: without_fates.get(u) for u in gone}
    assert all(full_fates.get(u) in across for u in came), {u: full_fates.get(u) for u in came}
    both = sorted(set(others.index) & set(without.index))
    assert len(both) > 500 and len(gone) + len(came) < 0.02 * len(both)
    cols = ["question", *LETTERS, "answer"]
    pd.testing.assert_frame_equal(others.loc[both, cols], without.loc[both, cols])


def test_changelog_names_what_moved_and_why():
    from pipelines.select.changelog import changelog
    before = pd.DataFrame({"item_id": ["a", "b", "c", "d"], "unit_id": ["ua", "ub", "uc", "ud"],
                           "dataset_id": ["x", "x", "y", "gone"], "subset": "main", "question": "q",
                           "A": "1", "B": "2", "C": None, "D": None, "E": None, "answer": ["A", "A", "B", "A"],
                           "split": "test"})
    after = before.iloc[[0, 1]].copy()
    after.loc[1, "answer"] = "B"
    after.loc[0, "C"] = float("nan")  # a missing option read back as NaN is no change
    after = pd.concat([after, pd.DataFrame([{**before.iloc[0].to_dict(), "item_id": "e", "unit_id": "ue",
                                             "dataset_id": "z"}])], ignore_index=True)
    log = changelog(before, after, {"uc": "cross_dataset_cap"}, {"x", "y", "z"}, {"ua", "ub", "uc", "ue"})
    assert log["counts"] == {"added": 1, "removed": 2, "changed": 1}
    assert {r["item_id"]: r["reason"] for r in log["removed"]} == {"c": "cross_dataset_cap",
                                                                    "d": "dataset removed from the registry"}
    assert log["changed"] == [{"item_id": "b", "dataset_id": "x", "reason": "changed", "fields": ["answer"]}]
    after.loc[0, ["question", "D"]] = ["q?", "3"]  # two fields of one item, reported in the compared order
    assert changelog(before, after, {}, {"x", "y", "z"}, set())["changed"][0] == {
        "item_id": "a", "dataset_id": "x", "reason": "changed", "fields": ["question", "D"]}
    assert log["added"] == [{"item_id": "e", "dataset_id": "z", "reason": "dataset added"}]
    assert changelog(None, after, {}, {"x"}, set())["first_build"]
