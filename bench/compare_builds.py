"""Compare two builds' outputs: the item tables must be identical and every exported image pixel-identical.

Run: ``python -m bench.compare_builds BEFORE_DATA_ROOT AFTER_DATA_ROOT``

A change that only alters how images are encoded or exported (PNG level, streaming, checks) must leave what a
reader sees unchanged. Compared:

* the tables every item comes from (``benchmark``, ``qa_candidates``, ``raw_samples``, ``slices``, ``regions``, and
  ``rendered_items`` without the columns that describe the PNG file rather than the pixels: sha256 and the
  columns the newer build adds), row for row, value for value;
* every exported Parquet shard of every config: the same files, and in each the same rows with the same values
  in every column but the image, whose bytes may differ but whose decoded pixels must be equal;
* every exported TSV: the same rows and text cells, and each row's base64 image decoding to equal pixels;
* the private answer key.

Exit status 1 and a list of differences when anything differs.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pyarrow.parquet as pq

FILE_COLUMNS = {"sha256"}  # describe the PNG file, not its pixels


def pixels(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


def same_frame(a: pd.DataFrame, b: pd.DataFrame, what: str, diffs: list[str]) -> None:
    cols = [c for c in a.columns if c in b.columns]
    extra = sorted(set(a.columns) ^ set(b.columns))
    if extra:
        diffs.append(f"{what}: columns only in one build: {extra}")
    if len(a) != len(b):
        diffs.append(f"{what}: {len(a)} rows before, {len(b)} after")
        return
    a, b = a[cols].reset_index(drop=True), b[cols].reset_index(drop=True)
    for c in cols:
        x, y = [_plain(v) for v in a[c].tolist()], [_plain(v) for v in b[c].tolist()]
        bad = np.array([u != v for u, v in zip(x, y)], bool)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            diffs.append(f"{what}: column {c} differs in {int(bad.sum())} rows (first: row {i}: {x[i]!r} vs {y[i]!r})")


def _plain(v):
    """A cell as a comparable value (arrays and lists to tuples, missing to None)."""
    if isinstance(v, np.ndarray | list | tuple):
        return tuple(_plain(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted((k, _plain(x)) for k, x in v.items()))
    if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
        return None
    return v


def compare_tables(before: Path, after: Path, diffs: list[str]) -> int:
    n = 0
    tables = sorted({p.relative_to(before / "tables") for p in (before / "tables").rglob("*.parquet")
                     if p.relative_to(before / "tables").parts[0] in
                     ("benchmark.parquet", "qa_candidates.parquet", "raw_samples", "slices", "regions",
                      "rendered_items.parquet")})
    for rel in tables:
        if not (after / "tables" / rel).is_file():
            diffs.append(f"table {rel} missing after")
            continue
        a = pq.read_table(before / "tables" / rel).to_pandas()
        b = pq.read_table(after / "tables" / rel).to_pandas()
        if rel.name == "rendered_items.parquet":
            a = a.drop(columns=[c for c in a.columns if c in FILE_COLUMNS])
            b = b.drop(columns=[c for c in b.columns if c in FILE_COLUMNS or c not in a.columns])
        same_frame(a, b, f"table {rel}", diffs)
        n += 1
    return n


def compare_exports(before: Path, after: Path, diffs: list[str]) -> dict:
    counts = {"parquet_files": 0, "tsv_files": 0, "images_compared": 0}
    ex_a, ex_b = before / "benchmark", after / "benchmark"
    files_a = sorted(p.relative_to(ex_a) for p in ex_a.rglob("*") if p.suffix in (".parquet", ".tsv"))
    files_b = sorted(p.relative_to(ex_b) for p in ex_b.rglob("*") if p.suffix in (".parquet", ".tsv"))
    if files_a != files_b:
        diffs.append(f"export files differ: only before {sorted(set(files_a) - set(files_b))}, "
                     f"only after {sorted(set(files_b) - set(files_a))}")
    for rel in sorted(set(files_a) & set(files_b)):
        if rel.suffix == ".parquet":
            a, b = pq.read_table(ex_a / rel).to_pandas(), pq.read_table(ex_b / rel).to_pandas()
            if "image" in a.columns and "image" in b.columns and len(a) == len(b):
                for i, (x, y) in enumerate(zip(a["image"], b["image"])):
                    counts["images_compared"] += 1
                    if x["path"] != y["path"] or not np.array_equal(pixels(x["bytes"]), pixels(y["bytes"])):
                        diffs.append(f"{rel} row {i}: image pixels differ")
                a, b = a.drop(columns="image"), b.drop(columns="image")
            same_frame(a, b, str(rel), diffs)
            counts["parquet_files"] += 1
        else:
            a = pd.read_csv(ex_a / rel, sep="\t", keep_default_na=False, dtype=str)
            b = pd.read_csv(ex_b / rel, sep="\t", keep_default_na=False, dtype=str)
            if len(a) == len(b):
                for i, (x, y) in enumerate(zip(a["image"], b["image"])):
                    if len(x) <= 64 or len(y) <= 64:  # a circular rotation names its image's row (VLMEvalKit)
                        if x != y:
                            diffs.append(f"{rel} row {i}: image reference {x!r} became {y!r}")
                        continue
                    counts["images_compared"] += 1
                    if not np.array_equal(pixels(base64.b64decode(x)), pixels(base64.b64decode(y))):
                        diffs.append(f"{rel} row {i}: image pixels differ")
            same_frame(a.drop(columns="image"), b.drop(columns="image"), str(rel), diffs)
            counts["tsv_files"] += 1
    return counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    args = ap.parse_args(argv)
    diffs: list[str] = []
    tables = compare_tables(args.before, args.after, diffs)
    counts = compare_exports(args.before, args.after, diffs)
    print(json.dumps({"tables_compared": tables, **counts, "differences": len(diffs)}, indent=1))
    for d in diffs[:50]:
        print("DIFF", d)
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
