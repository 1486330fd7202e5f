"""A small synthetic export in the contract's layout, for the evaluation tests.

Real files throughout: PNG images (seeded noise, one per row), HF-layout Parquet shards per config and split
with the public column allowlist, the VLMEvalKit TSVs written by the exporter's own tsv/circular writers, the
private answer key, the lmms-eval task folder and a manifest. The returned ``rows`` frame holds every row's
public and private values, so tests derive expected scores from it, never from the evaluator.

Layout: main 60 items (20 val, 40 test; 3 multi-answer; option counts 2-5; one item whose options name
letters, which circular evaluation leaves unrotated), consistency 4 mirrored pairs (test), robustness 6 test
items x 2 perturbations x 2 severities, grounding 6 box items (2 val, 4 test) on 40x20 images.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from pipelines.export.circular import write_circular_tsv
from pipelines.export.lmms_eval import write_lmms_eval_task
from pipelines.export.tsv import write_tsv
from pipelines.records import LETTERS

NAME = "medbench"
LABELS = ["liver", "spleen", "left kidney", "right kidney", "heart", "aorta", "stomach", "gallbladder", "pancreas",
          "bladder", "lymphocyte", "neutrophil"]
TASKS = ["Organ Recognition - Abdomen", "Laterality", "Cell Recognition"]
DEPARTMENTS = ["Gastroenterology", "Urology", "Hematology"]
MODALITIES = ["CT", "MRI", "Microscopy"]
GRANULARITIES = ["Mask level", "Box level", "Image level"]
DATASETS = ["ds_a", "ds_b", "ds_c"]
PUBLIC = ["index", "item_id", "question", "A", "B", "C", "D", "E", "answer", "multi_answer", "n_options",
          "clinical_vqa_task", "department", "perceptual_granularity", "modality", "original_task", "split",
          "dataset_id"]
FEATURES = datasets.Features({
    "image": datasets.Image(), "index": datasets.Value("int64"), "n_options": datasets.Value("int64"),
    "multi_answer": datasets.Value("bool"),
    **{c: datasets.Value("string") for c in PUBLIC if c not in ("index", "n_options", "multi_answer")}})
KEY_SCHEMA = pa.schema([
    ("config", pa.string()), ("split", pa.string()), ("index", pa.int64()), ("item_id", pa.string()),
    ("unit_id", pa.string()), ("answer", pa.string()), ("answer_label", pa.string()), ("multi_answer", pa.bool_()),
    ("n_options", pa.int64()), ("box", pa.list_(pa.float64())), ("clinical_vqa_task", pa.string()),
    ("department", pa.string()), ("perceptual_granularity", pa.string()), ("modality", pa.string()),
    ("dataset_id", pa.string()), ("group_id", pa.string()), ("split_group", pa.string()), ("generator", pa.string()),
    ("variant_of", pa.string()), ("variant_kind", pa.string()), ("variant_severity", pa.int64()),
    ("pair_id", pa.string())])
MULTI = {5: "A,C", 25: "B,D", 26: "A,B,D"}
ABNORMAL = 7  # its options name two letters: circular evaluation keeps one rotation


@dataclass
class FixtureExport:
    folder: Path
    rows: pd.DataFrame  # every exported row: public + private columns and the image bytes


def png(seed: int, size: tuple[int, int] = (24, 24)) -> bytes:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _main_rows() -> list[dict]:
    rows = []
    for i in range(60):
        rng = np.random.default_rng(1000 + i)
        multi = i in MULTI
        k = 4 if multi else 2 + i % 4
        labels = [LABELS[j] for j in rng.choice(len(LABELS), size=k, replace=False)]
        if i == ABNORMAL:
            labels[0] = "type A or B lesion"
        answer = MULTI[i] if multi else LETTERS[int(rng.integers(0, k))]
        t = i % 3
        rows.append({"config": "main", "split": "val" if i < 20 else "test", "index": i, "item_id": f"item{i:03d}",
                     "unit_id": f"unit{i:03d}", "question": f"Which structure is marked in image {i}?",
                     **{LETTERS[j]: labels[j] for j in range(k)}, "answer": answer,
                     "answer_label": ",".join(labels[LETTERS.index(a)] for a in answer.split(",")),
                     "multi_answer": multi, "n_options": k, "clinical_vqa_task": TASKS[t], "department": DEPARTMENTS[t],
                     "perceptual_granularity": GRANULARITIES[(i // 3) % 3], "modality": MODALITIES[(i // 2) % 3],
                     "original_task": "SEG_2D", "dataset_id": DATASETS[(i // 5) % 3], "group_id": f"g{i // 3}",
                     "split_group": f"g{i // 3}", "generator": "recognition", "image": png(i)})
    return rows


def _copies(main: list[dict]) -> list[dict]:
    rows, by_index = [], {r["index"]: r for r in main}
    for p, base in enumerate((20, 21, 22, 23)):  # consistency: each pair = the unflipped item + its mirror
        src = by_index[base]
        for m, idx in ((False, 100 + p), (True, 104 + p)):
            rows.append({**src, "config": "consistency", "index": idx, "item_id": f"cons{idx}",
                         "question": src["question"] + (" (the image is flipped left-right)" if m else ""),
                         "variant_of": src["item_id"], "variant_kind": "mirror" if m else None,
                         "pair_id": f"pair{p}", "image": png(idx)})
    n = 0
    for base in range(30, 36):  # robustness: perturbed copies of test items
        for kind in ("gaussian_noise", "contrast"):
            for sev in (1, 2):
                idx = 200 + n
                rows.append({**by_index[base], "config": "robustness", "index": idx, "item_id": f"rob{idx}",
                             "variant_of": by_index[base]["item_id"], "variant_kind": kind, "variant_severity": sev,
                             "image": png(idx)})
                n += 1
    for g in range(6):  # grounding: the answer is a box, no options
        idx = 300 + g
        rows.append({"config": "grounding", "split": "val" if g < 2 else "test", "index": idx,
                     "item_id": f"box{idx}", "unit_id": f"boxunit{g}", "question": f"Where is the liver in image {g}?",
                     "answer": None, "answer_label": "liver", "multi_answer": False, "n_options": 0,
                     "box": [0.1 + 0.05 * g, 0.2, 0.5 + 0.05 * g, 0.7], "clinical_vqa_task": TASKS[g % 2],
                     "department": DEPARTMENTS[0], "perceptual_granularity": "Box level", "modality": "CT",
                     "original_task": "SEG_2D", "dataset_id": DATASETS[0], "group_id": f"bg{g}",
                     "split_group": f"bg{g}", "generator": "grounding", "image": png(idx, (40, 20))})
    return rows


def _parquet(rows: pd.DataFrame, path: Path) -> None:
    public = rows.reindex(columns=PUBLIC).copy()
    public.loc[public["split"] == "test", "answer"] = None
    public = public.astype(object).where(public.notna(), None)
    data = {"image": [{"bytes": b, "path": f"{i}.png"} for b, i in zip(rows["image"], rows["item_id"])],
            **{c: public[c].tolist() for c in PUBLIC}}
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pydict({k: data[k] for k in FEATURES}, schema=FEATURES.arrow_schema), path)


def make_export(root: Path) -> FixtureExport:
    """Write the synthetic export under ``root/benchmark`` (images for the TSV writer under ``root/images``)."""
    main = _main_rows()
    rows = pd.DataFrame(main + _copies(main))
    for c in ("box", "variant_of", "variant_kind", "variant_severity", "pair_id", *LETTERS):
        if c not in rows:
            rows[c] = None
    folder = root / "benchmark"
    for i, (iid, img) in enumerate(zip(rows["item_id"], rows["image"])):
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "images" / f"{iid}.png").write_bytes(img)
    rows["image_path"] = [f"images/{iid}.png" for iid in rows["item_id"]]
    subs = {"main": "", "consistency": "consistency", "robustness": "robustness", "grounding": "grounding"}
    for config, sub in subs.items():
        part = rows[rows["config"] == config]
        for split in ("val", "test"):
            s = part[part["split"] == split].sort_values("index")
            if len(s):
                _parquet(s, (folder / sub if sub else folder) / "data" / f"{split}-00000-of-00001.parquet")
    write_tsv(rows[rows["config"] == "main"], root, folder, NAME)
    write_tsv(rows[rows["config"] == "consistency"], root, folder / "consistency", f"{NAME}_CONSISTENCY")
    write_tsv(rows[rows["config"] == "robustness"], root, folder / "robustness", f"{NAME}_ROBUSTNESS")
    write_circular_tsv(folder / "tsv", NAME)
    key = rows.reindex(columns=KEY_SCHEMA.names).sort_values("index")
    key = key.astype(object).where(key.notna(), None)
    (folder / "private").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pydict({c: key[c].tolist() for c in KEY_SCHEMA.names}, schema=KEY_SCHEMA),
                   folder / "private" / "answer_key.parquet")
    write_lmms_eval_task(folder, NAME)
    files = {p.relative_to(folder).as_posix(): {"sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
                                                 "bytes": p.stat().st_size}
             for p in sorted(folder.rglob("*")) if p.is_file()}
    manifest = {"pipeline_version": "test", "config_fingerprint": "fixture", "seed": 7, "files": files}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return FixtureExport(folder, rows)
