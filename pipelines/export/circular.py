"""Circular-evaluation TSVs in VLMEvalKit's convention (its `vlmutil circular`, tools.py::CIRCULAR).

Each single-answer item of an n-option TSV appears n times: rotation k (k = 0..n-1) has index
``index + k * 1,000,000`` and ``g_index = index``, its options shifted so that the option at letter m is the
original option at letter (m + k) mod n (the key moves from a to (a - k) mod n), and its ``image`` cell holds
the g_index, which VLMEvalKit reads as "the image of that row". An item whose option texts contain option
letters as words (VLMEvalKit calls it abnormal) keeps rotation 0 only, exactly as VLMEvalKit does. The file
name contains "CIRCULAR", so VLMEvalKit scores it with ``mcq_circular_eval``: an item counts only when every
rotation is answered right. ``medbench evaluate`` applies the same rule with the private key.
"""

from __future__ import annotations

import csv
import string
from pathlib import Path

import pandas as pd

from pipelines.export.tsv import WrittenTsv, records, stream_tsv, tsv_parts
from pipelines.storage import HashingWriter, atomic_path

OFFSET = 1_000_000
LETTERS = string.ascii_uppercase


def abnormal(options: dict[str, str]) -> bool:
    """VLMEvalKit's rule: an option text that is itself a letter, or names two option letters as words."""
    for text in options.values():
        words = "".join(ch if ch in string.ascii_letters or ch == " " else " " for ch in text).split()
        if len({w for w in words if w in options}) > 1:
            return True
        if text in LETTERS:
            return True
    return False


def rotation_count(options: dict[str, str]) -> int:
    """How many rotations of an item a circular TSV holds (1 for an abnormal item)."""
    return 1 if abnormal(options) else len(options)


def rotate(options: dict[str, str], k: int) -> dict[str, str]:
    """Options of rotation k: letter m shows the original option (m + k) mod n."""
    labels = LETTERS[:len(options)]
    return {labels[m]: options[labels[(m + k) % len(labels)]] for m in range(len(labels))}


def rotated_answer(answer: str, n: int, k: int) -> str:
    """The key of rotation k of an n-option item whose key is ``answer`` at rotation 0."""
    return LETTERS[(LETTERS.index(answer) - k) % n]


def _options(row: pd.Series) -> dict[str, str]:
    return {c: row[c] for c in LETTERS[:5] if c in row and isinstance(row[c], str) and row[c] != ""}


def _fits_under_offset(index: pd.Series) -> None:
    """ValueError when an item index would collide with a rotation's (index + k * OFFSET)."""
    if len(index) and int(index.max()) >= OFFSET:
        raise ValueError(f"an index of {int(index.max())} does not fit under the circular offset {OFFSET}")


def circular_frame(tsv: pd.DataFrame) -> pd.DataFrame:
    """The circular rows of one VLMEvalKit MCQ frame (options as strings, '' where absent)."""
    _fits_under_offset(tsv["index"])
    letters = [c for c in LETTERS[:5] if c in tsv]
    opts = [{c: v for c, v in zip(letters, vals) if isinstance(v, str) and v != ""}
            for vals in zip(*(tsv[c] for c in letters))]
    answers = tsv["answer"].tolist() if "answer" in tsv else [None] * len(tsv)
    counts = []
    for o, a in zip(opts, answers):
        n = rotation_count(o) if len(o) >= 2 else 1
        if isinstance(a, str) and a not in LETTERS[:len(o)]:
            n = 1  # not a valid single letter: VLMEvalKit leaves such rows unrotated
        counts.append(n)
    base = tsv.assign(g_index=tsv["index"].astype(int))
    frames = [base]
    for k in range(1, max(counts, default=1)):
        keep = [i for i, n in enumerate(counts) if n > k]
        if not keep:
            break
        part = base.iloc[keep].copy()
        part["index"] = part["g_index"] + k * OFFSET
        part["image"] = part["g_index"].astype(str)
        rotated = [rotate(opts[i], k) for i in keep]
        for c in letters:
            part[c] = [r.get(c, "") for r in rotated]
        if "answer" in part:
            part["answer"] = [rotated_answer(answers[i], len(opts[i]), k) for i in keep]
        frames.append(part)
    frame = pd.concat(frames, ignore_index=True)
    return frame.sort_values("index", kind="stable").reset_index(drop=True)


def write_circular_tsv(tsv_dir: Path, name: str, chunk_rows: int = 64,
                       written: dict[Path, WrittenTsv] | None = None) -> dict[Path, dict]:
    """``<name>_CIRCULAR_{VAL,TEST}.tsv`` beside the single-answer TSVs (a split without a TSV writes none); returns
    the sha256 and size of each file written, by its path.

    Streamed, so memory holds ``chunk_rows`` images, not the benchmark: the rotations are computed from the text
    columns alone (read ``chunk_rows`` rows at a time; a rotated row's image cell is its g_index), then rotation 0,
    which carries the images, is copied from the source TSV a record at a time, and the rotated rows follow (rows
    sorted by index, as the source TSV is). Rotation 0's rows are the source's records as they are, each with its
    g_index appended (the TSV writer's quoting is the one pandas would write them back with), so no image is parsed
    or re-written. ``written``: what :func:`pipelines.export.tsv.write_tsv` returned for the source TSVs just
    written; their text columns are taken from it instead of being parsed out of the file again."""
    out = {}
    for split in ("VAL", "TEST"):
        src = Path(tsv_dir) / f"{name}_{split}.tsv"
        if not src.exists():
            continue
        if written and src in written:
            text = written[src].text
            header = text.columns.tolist()
            text = text.drop(columns="image") if "image" in text else text
        else:
            header = pd.read_csv(src, sep="\t", dtype=str, nrows=0).columns.tolist()
            read = {"sep": "\t", "dtype": str, "keep_default_na": False, "chunksize": chunk_rows}
            text = pd.concat(pd.read_csv(src, usecols=[c for c in header if c != "image"], **read),  # chunked: the
                             ignore_index=True)  # parser would otherwise buffer the whole file, images and all
        if text.empty:
            continue
        text = text.assign(index=text["index"].astype(int))
        if not text["index"].is_monotonic_increasing:
            raise ValueError(f"{src}: rows are not in index order; write it with pipelines.export.tsv.write_tsv")
        path = Path(tsv_dir) / f"{name}_CIRCULAR_{split}.tsv"
        g_index = text["index"].tolist()
        with atomic_path(path) as tmp, open(tmp, "wb") as raw, open(src, "rb") as source:
            f = HashingWriter(raw)
            rows = records(source)
            f.write(next(rows).rstrip(b"\n") + b"\tg_index\n")
            n = 0
            for n, rec in enumerate(rows, 1):
                if n > len(g_index) or not rec.endswith(b"\n"):
                    raise ValueError(f"{src}: its records do not match its rows; write it with "
                                     "pipelines.export.tsv.write_tsv")
                f.write(rec[:-1] + b"\t%d\n" % g_index[n - 1])
            if n != len(g_index):
                raise ValueError(f"{src}: {n} records for {len(g_index)} rows; write it with "
                                 "pipelines.export.tsv.write_tsv")
            f.write(_rotated_records(text, header))
        out[path] = f.facts()
    return out


def _rotated_records(text: pd.DataFrame, header: list[str]) -> bytes:
    """The records of every rotation but 0 (as pandas writes them, index order), from a TSV's text columns
    (``index`` as int; an image column, if any, is not read; ``header``: the TSV's columns)."""
    if "image" in header:
        text = text.assign(image="")[header]  # a rotated row's image cell is its g_index (circular_frame)
    frame = circular_frame(text)
    options = {"sep": "\t", "index": False, "quoting": csv.QUOTE_MINIMAL, "lineterminator": "\n"}
    return frame[frame["index"] >= OFFSET].to_csv(header=False, **options).encode("utf-8")


def write_with_circular(bench: pd.DataFrame, data_root: Path, out_dir: Path, name: str
                        ) -> tuple[dict[Path, WrittenTsv], dict[Path, dict]]:
    """:func:`pipelines.export.tsv.write_tsv`'s TSVs of ``bench``, and beside each single-answer one its circular
    TSV, written in the same pass: each record goes to both files as it is made (rotation 0 with its g_index), the
    rotated rows (text only) follow once the rows are written. The files equal those of ``write_tsv`` followed by
    :func:`write_circular_tsv`, without reading the first back (hundreds of MB of base64 at real size). Returns
    what ``write_tsv`` returns, and the circular files' sha256 and size by path."""
    written: dict[Path, WrittenTsv] = {}
    circular: dict[Path, dict] = {}
    for path, frame, multi in tsv_parts(bench, data_root, out_dir, name):
        if multi:
            written[path] = stream_tsv(path, frame, data_root)
            continue
        _fits_under_offset(frame["index"])  # before hundreds of MB are written, not after
        target = path.with_name(path.name.replace(f"{name}_", f"{name}_CIRCULAR_", 1))
        with atomic_path(target) as tmp, open(tmp, "wb") as raw:
            echo = HashingWriter(raw)
            written[path] = stream_tsv(path, frame, data_root, echo=echo)
            text = written[path].text
            header = text.columns.tolist()
            echo.write(_rotated_records(text.assign(index=text["index"].astype(int)), header))
        circular[target] = echo.facts()
    return written, circular
