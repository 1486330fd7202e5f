"""Hugging Face-style Parquet: images embedded as datasets Image values, shards by size, a dataset card."""

from __future__ import annotations

import io
from pathlib import Path

import datasets
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.storage import atomic_path, atomic_write_bytes

# public columns; the test split's `answer` is empty (its key is written apart)
COLUMNS = ["index", "question", "A", "B", "C", "D", "E", "answer", "multi_answer", "clinical_vqa_task", "department",
           "perceptual_granularity", "modality", "gmai_modality", "original_task", "dataset_id", "group_id", "split",
           "item_id", "generator", "generator_params", "variant_of", "variant"]
FEATURES = datasets.Features({
    "image": datasets.Image(), "index": datasets.Value("int64"),
    **{c: datasets.Value("string") for c in COLUMNS if c not in ("index", "multi_answer")},
    "multi_answer": datasets.Value("bool")})


def _table(rows: pd.DataFrame, data_root: Path) -> pa.Table:
    images = [{"bytes": (data_root / p).read_bytes(), "path": f"{iid}.png"}
              for p, iid in zip(rows["image_path"], rows["item_id"])]
    public = rows.reindex(columns=COLUMNS)  # a table from before the generator columns exports them empty
    public.loc[public["split"] == "test", "answer"] = None
    public = public.astype(object).where(public.notna(), None)
    data = {"image": images, **{c: public[c].tolist() for c in COLUMNS}}
    return pa.Table.from_pydict({k: data[k] for k in FEATURES}, schema=FEATURES.arrow_schema)


ROW_GROUP = 256  # rows per Parquet row group: what the export holds in memory at a time


def _options(schema: pa.Schema) -> dict:
    """zstd and dictionaries for the text columns; the PNG bytes are stored as they are (already compressed:
    zstd would spend time for nothing and a dictionary of images never pays)."""
    text = [f"{f.name}.path" if f.name == "image" else f.name for f in schema]
    return {"compression": {**{c: "zstd" for c in text}, "image.bytes": "none"}, "use_dictionary": text}


def _write_shard(path: Path, rows: pd.DataFrame, data_root: Path) -> None:
    """One shard, streamed a row group at a time: each row group's images are read from the rendered files
    (their bytes as rendered, never re-encoded), written and released before the next."""
    with atomic_path(path) as tmp:
        writer = None
        try:
            for start in range(0, max(len(rows), 1), ROW_GROUP):
                table = _table(rows.iloc[start:start + ROW_GROUP], data_root)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema, **_options(table.schema))
                writer.write_table(table, row_group_size=ROW_GROUP)
        finally:
            if writer is not None:
                writer.close()


def write_parquet(bench: pd.DataFrame, data_root: Path, out_dir: Path, max_shard_bytes: int,
                  optional_splits: bool = False) -> list[Path]:
    """Write data/{split}-NNNNN-of-NNNNN.parquet, sharded by image bytes (the card is export/card.py's)."""
    written = []
    for split in ("val", "test"):
        rows = bench[bench["split"] == split].sort_values("index")
        if rows.empty and optional_splits:
            continue  # a config whose items are all in one split (the robustness copies of test items)
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
            _write_shard(path, rows.loc[idx], data_root)
            written.append(path)
    return written


def answer_key(bench: pd.DataFrame, out_dir: Path) -> Path:
    """The test answers, kept apart from the public files (never uploaded with them)."""
    test = bench[bench["split"] == "test"][["index", "item_id", "answer", "answer_label", "multi_answer"]]
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(test.sort_values("index"), preserve_index=False), buf, compression="zstd")
    path = out_dir / "private" / "test_answer_key.parquet"
    atomic_write_bytes(path, buf.getvalue())
    return path
