"""VLMEvalKit-style TSV (the GMAI-MMBench column set), single-answer items only; multi-answer apart."""

from __future__ import annotations

import base64
import csv
import io
from pathlib import Path

import pandas as pd

from pipelines.storage import atomic_write_bytes

LETTERS = "ABCDE"
# strings pandas.read_csv turns into NaN by default: an option with such a text would vanish
PANDAS_NA = {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>",
             "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"}


def safe_option(text: str | None) -> str | None:
    """Keep option texts that pandas would read as missing ('None', 'NA') readable: 'None' -> 'none'."""
    if text is None or text not in PANDAS_NA:
        return text
    return text.lower() if text.lower() not in PANDAS_NA else f"{text} (text)"


def tsv_frame(rows: pd.DataFrame, data_root: Path, with_answer: bool) -> pd.DataFrame:
    out = pd.DataFrame({
        "index": rows["index"].astype(int),
        "image": [base64.b64encode((data_root / p).read_bytes()).decode("ascii") for p in rows["image_path"]],
        "question": rows["question"]})
    for c in LETTERS:
        out[c] = [safe_option(v) if isinstance(v, str) else None for v in rows[c]]
    if with_answer:
        out["answer"] = rows["answer"].to_numpy()
    out["category"] = rows["clinical_vqa_task"].to_numpy()  # the task, never the answer text
    out["clinical VQA task"] = rows["clinical_vqa_task"].to_numpy()
    out["department"] = rows["department"].to_numpy()
    out["perceptual granularity"] = rows["perceptual_granularity"].to_numpy()
    out["modality"] = rows["modality"].to_numpy()
    out["original task"] = rows["original_task"].to_numpy()
    out["split"] = rows["split"].to_numpy()
    return out


def write_tsv(bench: pd.DataFrame, data_root: Path, out_dir: Path, name: str) -> list[Path]:
    paths = []
    for split in ("val", "test"):
        part = bench[bench["split"] == split].sort_values("index")
        for multi, suffix in ((False, ""), (True, "_MULTI")):
            rows = part[part["multi_answer"] == multi]
            if rows.empty:  # VLMEvalKit's loader rejects an empty TSV: a split without items has no file
                continue
            frame = tsv_frame(rows, data_root, with_answer=(split == "val"))
            buf = io.StringIO()
            frame.to_csv(buf, sep="\t", index=False, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
            path = out_dir / "tsv" / f"{name}{suffix}_{split.upper()}.tsv"
            atomic_write_bytes(path, buf.getvalue().encode("utf-8"))
            paths.append(path)
    return paths
