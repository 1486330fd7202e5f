"""The exported benchmark as the evaluator reads it: the answer key, the public rows, and its version.

The private key (``private/answer_key.parquet``) holds every config and split. A copy of the export without
it (as downloaded from the Hub) can still be scored on val from the public ``answer`` column; its test
answers, boxes and pairings stay with the maintainers, so those sections are not available then.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

CONFIGS = ("main", "consistency", "robustness", "grounding")
FOLDERS = {"main": "", "consistency": "consistency", "robustness": "robustness", "grounding": "grounding"}
KEY_FILE = "private/answer_key.parquet"
KEY_COLUMNS = ["config", "split", "index", "item_id", "unit_id", "answer", "answer_label", "multi_answer",
               "n_options", "box", "clinical_vqa_task", "department", "perceptual_granularity", "modality",
               "dataset_id", "group_id", "split_group", "generator", "variant_of", "variant_kind",
               "variant_severity", "pair_id"]
PUBLIC_TEXT = ["index", "item_id", "question", "A", "B", "C", "D", "E", "answer", "multi_answer", "n_options",
               "clinical_vqa_task", "department", "perceptual_granularity", "modality", "original_task", "split",
               "dataset_id"]


class BenchmarkError(ValueError):
    """The export folder cannot be evaluated as asked (the message names the file and the fix)."""


@dataclass
class Benchmark:
    folder: Path
    key: pd.DataFrame
    public: pd.DataFrame
    private_key: bool
    version: dict = field(default_factory=dict)

    def configs(self) -> list[str]:
        return [c for c in CONFIGS if (self.key["config"] == c).any()]

    def shards(self, config: str) -> list[Path]:
        return shard_files(self.folder, config)

    def images(self, config: str, indices: set[int] | None = None) -> dict[int, bytes]:
        """PNG/JPEG bytes of the config's rows by index (only ``indices`` when given)."""
        out = {}
        for path in self.shards(config):
            table = pq.read_table(path, columns=["index", "image"])
            for idx, img in zip(table.column("index").to_pylist(), table.column("image").to_pylist()):
                if indices is None or idx in indices:
                    out[int(idx)] = img["bytes"]
        return out


def shard_files(folder: Path, config: str) -> list[Path]:
    sub = FOLDERS[config]
    data = Path(folder) / sub / "data" if sub else Path(folder) / "data"
    return sorted(data.glob("*.parquet"))


def _public(folder: Path) -> pd.DataFrame:
    frames = []
    for config in CONFIGS:
        for path in shard_files(folder, config):
            names = set(pq.read_schema(path).names)
            part = pq.read_table(path, columns=[c for c in PUBLIC_TEXT if c in names]).to_pandas()
            frames.append(part.reindex(columns=PUBLIC_TEXT).assign(config=config))
    if not frames:
        raise BenchmarkError(f"{folder} holds no exported Parquet shards (data/*.parquet): give the export folder "
                             "(<data_root>/benchmark) or run `medbench build` first")
    out = pd.concat(frames, ignore_index=True)
    dup = out["index"][out["index"].duplicated()]
    if len(dup):
        raise BenchmarkError(f"{folder}: index {int(dup.iloc[0])} occurs in more than one exported row; an export "
                             "must number its rows uniquely across configs (re-export it)")
    return out


def _public_key(public: pd.DataFrame) -> pd.DataFrame:
    """The key a public copy can give: val rows with their public answer (no boxes, pairs or groups)."""
    return public[(public["split"] == "val") & public["answer"].notna()].reindex(columns=KEY_COLUMNS)


def content_version(folder: Path) -> dict:
    """The benchmark's identity: a hash over the public files' checksums, and the build settings."""
    manifest_path = Path(folder) / "manifest.json"
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        files = {p: f["sha256"] for p, f in manifest.get("files", {}).items() if not p.startswith("private/")}
        settings = {k: manifest.get(k) for k in ("pipeline_version", "config_fingerprint", "seed")}
    else:
        files = {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                 for p in sorted(Path(folder).rglob("*")) if p.is_file() and "private" not in p.parts}
        settings = {"pipeline_version": None, "config_fingerprint": None, "seed": None}
    digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    return {"content_sha256": digest, "public_files": len(files), **settings,
            "manifest": manifest_path.exists()}


def load_benchmark(folder: Path) -> Benchmark:
    folder = Path(folder)
    if not folder.is_dir():
        raise BenchmarkError(f"{folder} is not a folder: give the export folder (<data_root>/benchmark)")
    public = _public(folder)
    key_path = folder / KEY_FILE
    if key_path.exists():
        key = pd.read_parquet(io.BytesIO(key_path.read_bytes()))
        missing = [c for c in ("config", "split", "index", "answer") if c not in key]
        if missing:
            raise BenchmarkError(f"{key_path} lacks column(s) {missing}: it is not an answer key of this medbench "
                                 "version; re-export the benchmark")
        key = key.reindex(columns=KEY_COLUMNS)
        private = True
    else:
        key = _public_key(public)
        private = False
    key["index"] = key["index"].astype(int)
    key["multi_answer"] = key["multi_answer"].fillna(False).astype(bool)
    return Benchmark(folder, key.sort_values("index").reset_index(drop=True), public, private,
                     content_version(folder))
