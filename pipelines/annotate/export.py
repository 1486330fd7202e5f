"""Exports of the ROI annotations beside the benchmark, with images only for what is exported.

- ``roi/{split}-00000-of-00001.parquet``: the structured rows of every ROI and image the benchmark's items
  show (the ``roi_annotations`` config of the card; `datasets.load_dataset(folder, "roi_annotations")`);
- ``roi/medtrinity/{split}-00000-of-00001.parquet``: MedTrinity-25M's release shape, one row per image with
  ``file_name``, ``caption``, ``source``;
- ``roi/images/<dataset>/<image_id>.png``: the unprompted plane (stored pixels, no mark), so boxes and
  masks in the rows apply to it pixel for pixel. Structure and image are kept apart.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa

from pipelines.annotate.text import PARAGRAPH_SCHEMA, fact_check, prompt_messages
from pipelines.config import PipelineConfig
from pipelines.imageio import encode_png
from pipelines.records import ROI_ANNOTATIONS
from pipelines.registry import Registry
from pipelines.standardize.run import SamplePlanes
from pipelines.storage import atomic_write_bytes, atomic_write_table

ROI = "roi"
MEDTRINITY = ("file_name", "caption", "source")


def exported_rows(ann: pd.DataFrame, bench: pd.DataFrame, every: bool = False) -> pd.DataFrame:
    """Annotations of the images the benchmark shows, with the split of their items ('all' on request)."""
    split = bench.drop_duplicates("image_id").set_index("image_id")["split"]
    out = ann.assign(split=ann["image_id"].map(split))
    if every:
        out["split"] = out["split"].fillna("test")
    return out[out["split"].notna()].reset_index(drop=True)


def add_paragraphs(rows: pd.DataFrame, client, config: PipelineConfig) -> tuple[pd.DataFrame, list]:
    """LLM paragraphs for up to ``annotate.llm_max_rows`` ROI rows, each fact-checked against its fields."""
    rows = rows.copy()
    todo = rows.index[(rows["scope"] == "roi") & (rows["kind"] != "image")][:config.annotate.llm_max_rows]
    facts = [_facts(rows.loc[i]) for i in todo]
    results = client.map_json([(prompt_messages(f), "roi_paragraph", PARAGRAPH_SCHEMA) for f in facts])
    records = []
    for i, f, (data, rec) in zip(todo, facts, results):
        records.append(rec)
        rows.at[i, "llm_model"], rows.at[i, "llm_prompt_hash"] = rec.model, rec.prompt_hash
        if data is None or not isinstance(data.get("paragraph"), str):
            rows.at[i, "llm_fact_check"], rows.at[i, "llm_fact_issues"] = "error", [rec.error or "no paragraph"]
            continue
        issues = fact_check(data["paragraph"], f)
        rows.at[i, "llm_paragraph"] = data["paragraph"]
        rows.at[i, "llm_fact_check"] = "fail" if issues else "pass"
        rows.at[i, "llm_fact_issues"] = issues
    return rows, records


def _facts(row: pd.Series) -> dict:
    f = row.to_dict()
    f["relation_labels"] = [e["structure"] for e in json.loads(row["relations"] or "[]")]
    return f


def best_caption(row: dict) -> str:
    """The LLM paragraph when it passed its fact check, else the template caption."""
    return row["llm_paragraph"] if row.get("llm_fact_check") == "pass" else row["caption"]


def medtrinity_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per image: its global caption followed by each ROI's caption (MedTrinity's shape)."""
    out = []
    for image_id, part in rows.groupby("image_id", sort=True):
        part = part.sort_values(["scope", "annotation_id"])  # 'image' before 'roi'
        text = " ".join(best_caption(r) for r in part.to_dict("records"))
        first = part.iloc[0]
        out.append({"file_name": first["file_name"], "caption": text, "source": first["dataset_id"],
                    "split": first["split"]})
    return pd.DataFrame(out, columns=[*MEDTRINITY, "split"])


def write_images(rows: pd.DataFrame, sources: Registry, samples: dict[str, pd.DataFrame],
                 slices: dict[str, pd.DataFrame], folder: Path, config: PipelineConfig) -> int:
    """The unprompted PNG of every image the rows name, one source sample decoded at a time."""
    wanted = rows.drop_duplicates("image_id")[["dataset_id", "sample_id", "image_id", "file_name"]]
    written = 0
    for (ds, sample_id), part in wanted.groupby(["dataset_id", "sample_id"], sort=True):
        sample = samples[ds].set_index("sample_id").loc[sample_id].to_dict() | {"sample_id": sample_id}
        planes = SamplePlanes(sample, sources.get(ds), config)
        sl = slices[ds].set_index("image_id")
        for r in part.itertuples():
            row = sl.loc[r.image_id].to_dict() | {"image_id": r.image_id}
            atomic_write_bytes(folder / r.file_name, encode_png(planes.rgb(row)))
            written += 1
    return written


def write_exports(rows: pd.DataFrame, folder: Path) -> dict[str, int]:
    """roi/{split} and roi/medtrinity/{split} Parquet files; returns rows per file."""
    counts = {}
    cols = [f.name for f in ROI_ANNOTATIONS] + ["split"]
    schema = ROI_ANNOTATIONS.append(pa.field("split", pa.string()))
    mt = medtrinity_rows(rows)
    for split, part in rows.groupby("split", sort=True):
        name = f"{ROI}/{split}-00000-of-00001.parquet"
        atomic_write_table(pa.Table.from_pandas(part[cols], schema=schema, preserve_index=False), folder / name)
        counts[name] = len(part)
        m = mt[mt["split"] == split][list(MEDTRINITY)]
        name = f"{ROI}/medtrinity/{split}-00000-of-00001.parquet"
        atomic_write_table(pa.Table.from_pandas(m, preserve_index=False), folder / name)
        counts[name] = len(m)
    return counts

