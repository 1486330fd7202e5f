"""Hugging Face-style Parquet: images embedded as datasets Image values, shards by size, a dataset card."""

from __future__ import annotations

import io
import json
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.storage import atomic_write_bytes

# The public columns: an allowlist. Everything computed to make the key (generator values, region statistics, raw
# labels, source paths, planes, groups) stays in the private files; the test split's `answer` is empty.
COLUMNS = ["index", "item_id", "question", "A", "B", "C", "D", "E", "answer", "multi_answer", "n_options",
           "clinical_vqa_task", "department", "perceptual_granularity", "modality", "original_task", "split",
           "dataset_id"]
FEATURES = datasets.Features({
    "image": datasets.Image(), "index": datasets.Value("int64"),
    **{c: datasets.Value("string") for c in COLUMNS if c not in ("index", "multi_answer", "n_options")},
    "multi_answer": datasets.Value("bool"), "n_options": datasets.Value("int64")})
# the private answer key: one row per exported item of every config and split (the evaluator's input)
KEY_COLUMNS = ["config", "split", "index", "item_id", "unit_id", "answer", "answer_label", "multi_answer", "n_options",
               "box", "clinical_vqa_task", "department", "perceptual_granularity", "modality", "dataset_id",
               "group_id", "split_group", "generator", "variant_of", "variant_kind", "variant_severity", "pair_id"]
# provenance: how each item was made, for maintainers (never published)
PROVENANCE_COLUMNS = ["config", "index", "item_id", "dataset_id", "source_path", "image_id", "source_region_ids",
                      "generator", "generator_params", "template_id", "option_origins", "variant", "image_path"]


def _table(rows: pd.DataFrame, data_root: Path) -> pa.Table:
    images = [{"bytes": (data_root / p).read_bytes(), "path": f"{iid}.png"}
              for p, iid in zip(rows["image_path"], rows["item_id"])]
    public = rows.reindex(columns=COLUMNS)  # a table from before the generator columns exports them empty
    if "generator" in rows and "box" in rows:  # a grounding item's val answer is its box
        boxed = (rows["generator"] == "grounding").to_numpy() & (public["split"] == "val").to_numpy()
        public.loc[boxed, "answer"] = [json.dumps([float(v) for v in b]) for b in rows.loc[boxed, "box"]]
    public.loc[public["split"] == "test", "answer"] = None
    public = public.astype(object).where(public.notna(), None)
    data = {"image": images, **{c: public[c].tolist() for c in COLUMNS}}
    return pa.Table.from_pydict({k: data[k] for k in FEATURES}, schema=FEATURES.arrow_schema)


def _bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd", row_group_size=256)
    return buf.getvalue()


def write_parquet(bench: pd.DataFrame, data_root: Path, out_dir: Path, max_shard_bytes: int) -> list[Path]:
    """Write data/{split}-NNNNN-of-NNNNN.parquet, sharded by image bytes (the card is export/card.py's). A split
    without items writes no file (the card then declares only the splits that exist)."""
    written = []
    for split in ("val", "test"):
        rows = bench[bench["split"] == split].sort_values("index")
        if rows.empty:
            continue
        shards, current, size = [], [], 0
        for i, p in zip(rows.index, rows["image_path"]):
            n = (data_root / p).stat().st_size + 1024
            if current and size + n > max_shard_bytes:
                shards.append(current)
                current, size = [], 0
            current.append(i)
            size += n
        shards.append(current)
        for k, idx in enumerate(shards):
            path = out_dir / "data" / f"{split}-{k:05d}-of-{len(shards):05d}.parquet"
            atomic_write_bytes(path, _bytes(_table(rows.loc[idx], data_root)))
            written.append(path)
    return written


def _variant_fields(variant) -> tuple[str | None, int | None]:
    if not isinstance(variant, str):
        return None, None
    v = json.loads(variant)
    return v.get("kind"), v.get("severity")


def _config_of(bench: pd.DataFrame) -> pd.Series:
    return bench["subset"] if "subset" in bench else pd.Series("main", index=bench.index)


def answer_key(bench: pd.DataFrame, out_dir: Path) -> Path:
    """The key of every exported item (every config, both splits) and the provenance of each, kept apart from
    the public files (never uploaded with them)."""
    rows = bench.assign(config=_config_of(bench)).sort_values("index")
    rows = rows.reindex(columns=list(dict.fromkeys([*rows.columns, *KEY_COLUMNS, *PROVENANCE_COLUMNS, "variant"])))
    kinds = [_variant_fields(v) for v in rows["variant"]]
    key = pd.DataFrame({
        **{c: rows[c].to_numpy() for c in KEY_COLUMNS},
        "variant_kind": [k for k, _ in kinds], "variant_severity": pd.array([s for _, s in kinds], dtype="Int64"),
        "box": [list(b) if isinstance(b, (list, tuple, np.ndarray)) else None for b in rows["box"]],
        "pair_id": [v if c == "consistency" else None for v, c in zip(rows["variant_of"], rows["config"])]})
    key = key[KEY_COLUMNS]
    key["answer"] = key["answer"].where(key["config"] != "grounding", None)
    path = out_dir / "private" / "answer_key.parquet"
    atomic_write_bytes(path, _plain_parquet(key))
    prov = rows.reindex(columns=PROVENANCE_COLUMNS)
    prov["source_region_ids"] = [list(v) if v is not None and not isinstance(v, float) else None
                                 for v in prov["source_region_ids"]]
    prov["option_origins"] = [list(v) if v is not None and not isinstance(v, float) else None
                              for v in prov["option_origins"]]
    atomic_write_bytes(out_dir / "private" / "provenance.parquet", _plain_parquet(prov))
    return path


def _plain_parquet(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(df.reset_index(drop=True), preserve_index=False), buf, compression="zstd")
    return buf.getvalue()
