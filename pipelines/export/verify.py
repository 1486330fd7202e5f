"""Readability of what was exported, judged from the exported files alone (not the pipeline's tables).

Every image in the Parquet shards and the VLMEvalKit TSVs is decoded and measured again: its shorter
side, aspect ratio and longer side against the gates, and, for box and contour items, whether the
drawn mark is actually there (pixels of the prompt colour). A dataset opted out of a rule in the
registry is exempt from that rule here too.
"""

from __future__ import annotations

import base64
import io
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from PIL import Image

from pipelines.benchmark.leakage import cross_split_near_duplicates
from pipelines.config import PipelineConfig
from pipelines.standardize.display import phash_hex

MARKED = {"Box level", "Contour level"}


def measure(png: bytes) -> tuple[int, int, np.ndarray]:
    with Image.open(io.BytesIO(png)) as im:
        rgb = np.asarray(im.convert("RGB"))
    return rgb.shape[1], rgb.shape[0], rgb


def mark_pixels(rgb: np.ndarray, colours: list[tuple[int, int, int]]) -> int:
    """Pixels exactly of a prompt colour (lines are drawn opaque)."""
    return int(sum(np.all(rgb == np.array(c, np.uint8), axis=2).sum() for c in colours))


def problems(width: int, height: int, rgb: np.ndarray, granularity: str, config: PipelineConfig,
             exempt: set[str]) -> list[str]:
    g, out = config.gates, []
    short, long = min(width, height), max(width, height)
    if short < g.min_image_side and "image_too_small" not in exempt:
        out.append("image_too_small")
    if long > g.max_aspect * short and "image_too_elongated" not in exempt:
        out.append("image_too_elongated")
    if long > config.display.max_image_side:
        out.append("image_too_large")
    colours = [config.render.color, config.render.alt_color, *config.generators.palette.values()]
    if granularity in MARKED and mark_pixels(rgb, colours) < g.min_mark_side * 4:
        out.append("mark_not_visible")
    return out


def cross_split_duplicates(out_dir: Path, bits: int) -> dict:
    """Pairs of exported images in different splits whose pHash (recomputed from the decoded Parquet
    images) is within ``bits``: the same scan or field on both sides of the split. Must be 0."""
    hashes, splits = [], []
    for path in sorted((out_dir / "data").glob("*.parquet")):
        for r in pq.read_table(path, columns=["image", "split"]).to_pylist():
            _, _, rgb = measure(r["image"]["bytes"])
            hashes.append(phash_hex(rgb))
            splits.append(r["split"])
    n, examples = cross_split_near_duplicates(pd.Series(hashes, dtype=object), pd.Series(splits, dtype=object), bits)
    return {"images": len(hashes), "pairs": n, "examples": [f"{a} ~ {b}" for a, b in examples]}


def _rows(out_dir: Path):
    """(file, index, dataset_id, granularity, png bytes) of every exported image."""
    for path in sorted(out_dir.glob("data/*.parquet")) + sorted(out_dir.glob("*/data/*.parquet")):
        t = pq.read_table(path, columns=["image", "index", "dataset_id", "perceptual_granularity"]).to_pylist()
        for r in t:
            yield path.name, r["index"], r["dataset_id"], r["perceptual_granularity"], r["image"]["bytes"]
    for path in sorted(out_dir.glob("tsv/*.tsv")) + sorted(out_dir.glob("*/tsv/*.tsv")):
        df = pd.read_csv(path, sep="\t", usecols=["index", "image", "perceptual granularity"], keep_default_na=False)
        for r in df.to_dict("records"):
            if len(str(r["image"])) <= 64:  # VLMEvalKit's reference to another row's image (circular rotations)
                continue
            yield path.name, int(r["index"]), None, r["perceptual granularity"], base64.b64decode(r["image"])


def verify_exports(out_dir: Path, config: PipelineConfig, opt_outs: dict[str, list[str]] | None = None) -> dict:
    """Counts per problem and up to 20 examples; ``images`` is how many exported images were read."""
    opt_outs = opt_outs or {}
    counts: Counter = Counter()
    examples: list[str] = []
    dataset_of: dict[int, str] = {}  # the TSVs carry no dataset id: the Parquet rows (read first) give it
    n = 0
    for name, index, ds, gran, png in _rows(out_dir):
        n += 1
        if ds is not None:
            dataset_of[index] = ds
        ds = ds if ds is not None else dataset_of.get(index)
        w, h, rgb = measure(png)
        for p in problems(w, h, rgb, gran, config, set(opt_outs.get(ds, []))):
            counts[p] += 1
            if len(examples) < 20:
                examples.append(f"{name} index {index}: {p} ({w}x{h})")
    return {"images": n, "problems": dict(counts), "examples": examples}
