"""VLMEvalKit-style TSV (the GMAI-MMBench column set), single-answer items only; multi-answer apart."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pybase64

from pipelines.records import LETTERS
from pipelines.storage import HashingWriter, atomic_path

# strings pandas.read_csv turns into NaN by default: an option with such a text would vanish
PANDAS_NA = {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>",
             "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"}


def safe_option(text: str | None) -> str | None:
    """Keep option texts that pandas would read as missing ('None', 'NA') readable: 'None' -> 'none'."""
    if text is None or text not in PANDAS_NA:
        return text
    return text.lower() if text.lower() not in PANDAS_NA else f"{text} (text)"


def tsv_frame(rows: pd.DataFrame, data_root: Path, with_answer: bool) -> pd.DataFrame:
    """The TSV's columns; ``image`` holds each rendered file's path under ``data_root`` (:func:`stream_tsv`
    puts the file's base64 there as it writes the row)."""
    out = pd.DataFrame({
        "index": rows["index"].astype(int),
        "image": rows["image_path"],
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


def _cell(v) -> object:
    """A value as pandas.to_csv writes it (missing -> empty field)."""
    return "" if v is None or (isinstance(v, float) and v != v) else v


@dataclass(frozen=True)
class WrittenTsv:
    """A TSV as written: its manifest facts (sha256, bytes) and its columns as a reader gets them back (every
    cell the string the file holds, '' where missing; the image column left empty)."""

    facts: dict
    text: pd.DataFrame


def stream_tsv(path: Path, frame: pd.DataFrame, data_root: Path, echo: HashingWriter | None = None) -> WrittenTsv:
    """Write ``frame`` as a VLMEvalKit TSV, one row at a time: each row's image (the ``image`` column holds the
    rendered file's path) is read and base64-encoded straight into the file, so memory holds one image, not
    the benchmark. Quoting and line ends are pandas.to_csv's (csv.QUOTE_MINIMAL, '\\n'). The base64 text
    (never quoted: it has no tab, quote or line break) is written around the csv module, which would scan
    every one of its characters. ``echo``: a second file that gets every record too, with the row's index appended
    as a last column (``g_index``, and the header's name for it): rotation 0 of a circular TSV, written as the rows
    go instead of copied out of this file afterwards."""
    at = list(frame.columns).index("image")
    index_at = list(frame.columns).index("index")
    text = io.StringIO()
    cells_writer = csv.writer(text, delimiter="\t", quoting=csv.QUOTE_MINIMAL, lineterminator="\n")

    def fields(cells: list) -> bytes:
        text.seek(0)
        text.truncate()
        cells_writer.writerow(cells)
        return text.getvalue().encode("utf-8")

    with atomic_path(path) as tmp, open(tmp, "wb") as raw:
        fh = HashingWriter(raw)
        header = fields(list(frame.columns))
        fh.write(header)
        if echo is not None:
            echo.write(header[:-1] + b"\tg_index\n")
        for row in frame.itertuples(index=False, name=None):
            cells = [_cell(v) for v in row]
            parts = (fields([*cells[:at], ""])[:-1] if at else b"",  # the cells before the image, and its tab
                     pybase64.b64encode((data_root / row[at]).read_bytes()),  # SIMD: 2x the standard library
                     fields(["", *cells[at + 1:]]) if at + 1 < len(cells) else b"\n")  # its tab, the cells after
            for part in parts:
                fh.write(part)
            if echo is not None:
                echo.write(parts[0])
                echo.write(parts[1])
                echo.write(parts[2][:-1] + b"\t%d\n" % int(row[index_at]))
    # what the csv module wrote is what a reader parses back: str() of each cell (repr() of a float), '' if missing
    back = frame.assign(image="").astype(object)
    for c in back.columns:
        back[c] = [repr(v) if isinstance(v, float) else str(v) for v in map(_cell, back[c].tolist())]
    return WrittenTsv(fh.facts(), back)


def records(fh) -> Iterator[bytes]:
    """The records of a TSV written as above (csv.QUOTE_MINIMAL, '\\n'), read from a binary file: each with its
    line end, header first. A quoted field may hold a line break, so lines are joined until their quotes pair up
    (a quote inside a quoted field is doubled, so an odd count means the record goes on); no field is parsed, so a
    base64 image is copied, never scanned character by character."""
    pending: list[bytes] = []
    quotes = 0
    for line in fh:
        pending.append(line)
        quotes += line.count(b'"')
        if quotes % 2 == 0:
            yield b"".join(pending)
            pending, quotes = [], 0
    if pending:
        raise ValueError(f"{getattr(fh, 'name', 'TSV')}: the last record opens a quote it never closes")


def tsv_parts(bench: pd.DataFrame, data_root: Path, out_dir: Path, name: str
              ) -> Iterator[tuple[Path, pd.DataFrame, bool]]:
    """(path, TSV frame, multi-answer) of each TSV of ``bench``: per split, single- and multi-answer items apart,
    rows in index order."""
    for split in ("val", "test"):
        part = bench[bench["split"] == split].sort_values("index")
        for multi, suffix in ((False, ""), (True, "_MULTI")):
            rows = part[part["multi_answer"] == multi]
            if rows.empty:  # VLMEvalKit's loader rejects an empty TSV: a split without items has no file
                continue
            yield (out_dir / "tsv" / f"{name}{suffix}_{split.upper()}.tsv",
                   tsv_frame(rows, data_root, with_answer=(split == "val")), multi)


def write_tsv(bench: pd.DataFrame, data_root: Path, out_dir: Path, name: str) -> dict[Path, WrittenTsv]:
    return {path: stream_tsv(path, frame, data_root) for path, frame, _ in tsv_parts(bench, data_root, out_dir, name)}
