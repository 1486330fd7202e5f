"""Derive the committed mesh_vocab/ subset from the full MeSH tables (run by `medbench vocab subset`)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
from pathlib import Path

import pandas as pd

# Anatomy, organisms, diseases, techniques/equipment: what imaging labels name.
DEFAULT_BRANCHES = ("A", "B", "C", "E")


def _gz_tsv(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, compresslevel=9) as gz:
        gz.write(df.to_csv(sep="\t", index=False, lineterminator="\n").encode("utf-8"))
    return buf.getvalue()


def build_subset(full_dir: Path, out_dir: Path, version: str = "2024",
                 branches: tuple[str, ...] = DEFAULT_BRANCHES, extra_ids: set[str] = frozenset()) -> dict:
    """Keep descriptors with a tree number under ``branches`` plus ``extra_ids``; write deterministic files."""
    from pipelines.storage import atomic_write_bytes

    read = dict(sep="\t", dtype=str, keep_default_na=False)
    terms = pd.read_csv(next(Path(full_dir).glob("*terms*.tsv.gz")), **read)
    trees = pd.read_csv(next(Path(full_dir).glob("*trees*.tsv.gz")), **read)
    keep = set(trees.loc[trees["TreeNumber"].str.startswith(branches), "DescriptorUI"]) | set(extra_ids)
    terms = terms[terms["DescriptorUI"].isin(keep)].sort_values(["DescriptorUI", "ConceptUI", "TermUI", "TermName"])
    trees = trees[trees["DescriptorUI"].isin(keep)].sort_values(["DescriptorUI", "TreeNumber"])
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = {"mesh_version": version, "source": str(full_dir), "branches": list(branches),
                "extra_ids": sorted(extra_ids), "descriptors": len(keep), "files": {}}
    for name, df in ((f"mesh{version}_terms.subset.tsv.gz", terms), (f"mesh{version}_trees.subset.tsv.gz", trees)):
        data = _gz_tsv(df)
        atomic_write_bytes(out_dir / name, data)
        manifest["files"][name] = {"rows": len(df), "sha256": hashlib.sha256(data).hexdigest()}
    manifest["notice"] = ("Derived from MeSH (NLM); subset of descriptors, unchanged otherwise. "
                          "MeSH is produced by the U.S. National Library of Medicine.")
    atomic_write_bytes(out_dir / "MANIFEST.json", (json.dumps(manifest, indent=2) + "\n").encode())
    return manifest
