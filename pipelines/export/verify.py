"""Readability of what was exported, checked against what was rendered, without decoding any image again.

Every image payload in the exported files (the Parquet ``image`` bytes of every config, the base64 of every
TSV row) is hashed and must be byte for byte the PNG that render wrote for that item (its recorded sha256).
Render measured that image once, on the array it encoded (PNG is lossless, so those are the exported pixels):
its size, its mark pixels (prompt colours) and its pHash. The gates are judged on those recorded facts: shorter
side, aspect ratio, longer side, and for box and contour items whether the drawn mark is there. A dataset
opted out of a rule in the registry is exempt from that rule here too.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pybase64

from pipelines.config import PipelineConfig
from pipelines.export.card import ROI_FOLDER
from pipelines.processes import ordered_map
from pipelines.validity.leakage import cross_split_near_duplicates

MARKED = {"Box level", "Contour level"}
GATES = {"image_too_small", "image_too_elongated", "image_too_large", "mark_not_visible"}
RENDERED_FACTS = ["item_id", "sha256", "width", "height", "mark_pixels", "phash"]
TSV_BLOCK_BYTES = 1 << 24  # Arrow's CSV reader needs a whole row in one block (larger rows: a retry, bigger)


@dataclass(frozen=True)
class Payload:
    """One exported image: where it is, which item it shows, and the sha256 of its bytes."""

    file: str  # path under the export folder
    index: int
    item_id: str | None  # None: a TSV row whose index no Parquet row carries
    split: str | None
    dataset_id: str | None
    granularity: str | None
    sha256: str


def _parquet_payloads(out_dir: Path, path: Path):
    """A row group at a time (what the writer holds too), only the image bytes turned into Python objects."""
    f = pq.ParquetFile(path)
    cols = [c for c in ("index", "item_id", "split", "dataset_id", "perceptual_granularity") if c in f.schema_arrow.names]
    for g in range(f.num_row_groups):
        group = f.read_row_group(g, columns=["image", *cols])
        meta = {c: group.column(c).to_pylist() if c in cols else [None] * group.num_rows
                for c in ("index", "item_id", "split", "dataset_id", "perceptual_granularity")}
        images = group.column("image").combine_chunks()
        data = images.field("bytes")
        for i in range(group.num_rows):
            payload = data[i].as_buffer() if images[i].is_valid and data[i].is_valid else b""
            yield Payload(path.relative_to(out_dir).as_posix(), int(meta["index"][i]), meta["item_id"][i],
                          meta["split"][i], meta["dataset_id"][i], meta["perceptual_granularity"][i],
                          hashlib.sha256(payload).hexdigest())
        del group, images, data


def _tsv_payloads(out_dir: Path, path: Path) -> list[Payload]:
    """TSV rows, streamed a block at a time by Arrow's CSV reader (quoted tabs and newlines inside a cell are
    read as pandas reads them; VLMEvalKit's own reading, pandas, is what the export tests use, while here
    parsing is a third of the work and Arrow's reader takes half the time). The TSVs carry no item id, split
    or dataset: :func:`exported_payloads` takes them from the Parquet row of the same index (unique across the
    export). A row longer than a block (a very large image) is read again with larger blocks."""
    block = TSV_BLOCK_BYTES
    while True:
        try:
            return list(_tsv_rows(out_dir, path, block))
        except pa.ArrowInvalid as exc:
            if "straddl" not in str(exc) or block > path.stat().st_size:
                raise
            block *= 4


def _tsv_rows(out_dir: Path, path: Path, block: int):
    names = ["index", "image", "perceptual granularity"]
    reader = pacsv.open_csv(
        path, read_options=pacsv.ReadOptions(block_size=block),
        parse_options=pacsv.ParseOptions(delimiter="\t", newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(include_columns=names, strings_can_be_null=False,
                                             column_types={"index": pa.int64(), "image": pa.string(),
                                                           "perceptual granularity": pa.string()}))
    for batch in reader:
        for index, b64, gran in zip(batch.column("index").to_pylist(), _cells(batch.column("image")),
                                    batch.column("perceptual granularity").to_pylist()):
            if len(b64) <= 64:  # VLMEvalKit's reference to another row's image (a circular rotation): checked there
                continue
            yield Payload(path.relative_to(out_dir).as_posix(), int(index), None, None, None, gran,
                          hashlib.sha256(pybase64.b64decode(b64)).hexdigest())  # as lenient as base64.b64decode, 4x faster


def _cells(column: pa.Array) -> list[memoryview]:
    """Each cell of an Arrow string column as a view of the column's bytes: no Python string per cell (copying
    hundreds of MB of base64 into strings, then into bytes to decode them, was half of reading a TSV)."""
    _, offsets, data = column.buffers()
    width = 8 if pa.types.is_large_string(column.type) else 4
    ends = np.frombuffer(offsets, f"<i{width}", len(column) + 1, column.offset * width).tolist()
    view = memoryview(data if data is not None else b"")
    return [view[a:b] for a, b in zip(ends[:-1], ends[1:])]


def _file_payloads(job: tuple[Path, Path]) -> list[Payload]:
    out_dir, path = job
    return list(_parquet_payloads(out_dir, path) if path.suffix == ".parquet" else _tsv_payloads(out_dir, path))


def _payload_files(out_dir: Path) -> tuple[list[Path], list[Path]]:
    """The item Parquet shards (private/ and the ROI annotations excluded) and the TSVs under the export folder."""
    parquets = sorted(p for p in out_dir.rglob("*.parquet") if p.parent.name == "data"
                      and not {"private", ROI_FOLDER} & set(p.relative_to(out_dir).parts))  # items only
    return parquets, sorted(p for p in out_dir.rglob("*.tsv") if p.parent.name == "tsv")


def parquet_payloads(out_dir: Path) -> dict[str, list[Payload]]:
    """Every image of the item Parquet shards, by file (its path under ``out_dir``), read here: the export reads
    them back in its own process once they are written, while its worker is still writing the TSVs."""
    return {p.relative_to(out_dir).as_posix(): list(_parquet_payloads(out_dir, p)) for p in _payload_files(out_dir)[0]}


def exported_payloads(out_dir: Path, workers: int = 1, read: dict[str, list[Payload]] | None = None
                      ) -> list[Payload]:
    """Every image of every Parquet shard and TSV under the export folder (private/ excluded), streamed: one
    row group or chunk of rows in memory at a time, only hashes kept; files spread over ``workers``
    processes (hashing and base64-decoding a few hundred MB is the work). ``read``: files already read back
    (:func:`parquet_payloads`, by path under the folder), not read again."""
    read = read or {}
    parquets, tsvs = _payload_files(out_dir)
    todo = sorted((p for p in [*parquets, *tsvs] if p.relative_to(out_dir).as_posix() not in read),
                  key=lambda p: -p.stat().st_size)  # the largest first: the last job is short
    found = {**{out_dir / k: v for k, v in read.items()},
             **dict(zip(todo, ordered_map(_file_payloads, [(out_dir, p) for p in todo], workers)))}
    out = [p for path in parquets for p in found[path]]
    items = {p.index: p for p in out}
    for path in tsvs:
        for p in found[path]:
            ref = items.get(p.index)
            out.append(replace(p, item_id=ref.item_id, split=ref.split, dataset_id=ref.dataset_id) if ref else p)
    return out


def problems(width: int, height: int, marked_pixels: int | None, granularity: str, config: PipelineConfig,
             exempt: set[str]) -> list[str]:
    """The gates an image of this size and mark fails (``marked_pixels``: pixels of a prompt colour in it)."""
    g, out = config.gates, []
    short, long = min(width, height), max(width, height)
    if short < g.min_image_side and "image_too_small" not in exempt:
        out.append("image_too_small")
    if long > g.max_aspect * short and "image_too_elongated" not in exempt:
        out.append("image_too_elongated")
    if long > config.display.max_image_side:
        out.append("image_too_large")
    if granularity in MARKED and (marked_pixels or 0) < g.min_mark_side * 4:
        out.append("mark_not_visible")
    return out


def _facts(rendered: pd.DataFrame) -> dict[str, dict]:
    return rendered[RENDERED_FACTS].set_index("item_id").to_dict("index")


def verify_exports(out_dir: Path, rendered: pd.DataFrame, config: PipelineConfig,
                   opt_outs: dict[str, list[str]] | None = None, payloads: list[Payload] | None = None) -> dict:
    """Counts per problem and up to 20 examples; ``images`` is how many exported image payloads were checked.

    ``rendered``: the rendered_items rows (item_id, sha256, width, height, mark_pixels, phash). A payload whose
    bytes are not its item's rendered PNG is ``payload_differs_from_render`` (``not_rendered`` when no render
    of the item is recorded); the others are judged on the recorded facts."""
    opt_outs = opt_outs or {}
    facts = _facts(rendered)
    counts: Counter = Counter()
    examples: list[str] = []
    payloads = exported_payloads(out_dir) if payloads is None else payloads
    for p in payloads:
        fact = facts.get(p.item_id) if p.item_id is not None else None
        if fact is None:
            found = ["not_rendered"]
        elif fact["sha256"] != p.sha256:
            found = ["payload_differs_from_render"]
        else:
            found = problems(int(fact["width"]), int(fact["height"]), fact["mark_pixels"], p.granularity, config,
                             set(opt_outs.get(p.dataset_id, [])))
        for name in found:
            counts[name] += 1
            if len(examples) < 20:
                size = f" ({int(fact['width'])}x{int(fact['height'])})" if name in GATES else ""
                examples.append(f"{p.file} index {p.index}: {name}{size}")
    return {"images": len(payloads), "problems": dict(counts), "examples": examples}


def cross_split_duplicates(out_dir: Path, rendered: pd.DataFrame, bits: int,
                           payloads: list[Payload] | None = None) -> dict:
    """Pairs of exported images of the main config (data/) in different splits whose pHash is within ``bits``:
    the same scan or field on both sides of the split. Must be 0. The pHash is the one render computed on the
    image it encoded; a payload that is not its rendered PNG is reported by :func:`verify_exports` (it has no
    trusted hash, so it is left out here)."""
    facts = _facts(rendered)
    payloads = exported_payloads(out_dir) if payloads is None else payloads
    main = [p for p in payloads if p.file.startswith("data/") and p.item_id in facts
            and facts[p.item_id]["sha256"] == p.sha256]
    hashes = pd.Series([facts[p.item_id]["phash"] for p in main], dtype=object)
    n, examples = cross_split_near_duplicates(hashes, pd.Series([p.split for p in main], dtype=object), bits)
    return {"images": len(main), "pairs": n, "examples": [f"{a} ~ {b}" for a, b in examples]}

