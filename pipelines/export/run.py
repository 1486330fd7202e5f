"""Write every export of the benchmark and a manifest with per-file checksums."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from pipelines import PIPELINE_VERSION
from pipelines.config import PipelineConfig
from pipelines.export.card import CONFIG_FOLDERS, build_card
from pipelines.export.lmms_eval import write_lmms_eval_task
from pipelines.export.parquet import FEATURES, answer_key, write_parquet
from pipelines.export.charts import summary
from pipelines.export.tsv_files import write_tsvs
from pipelines.processes import run_beside
from pipelines.sources.registry import registry_of
from pipelines.storage import atomic_write_bytes, file_facts, staged_dir
from pipelines.vocab.tree import lexical_tree, offered_options, tree_html, tree_json


def _configs(full: pd.DataFrame, subset: pd.Series) -> list[tuple[str, pd.DataFrame]]:
    """The configs beside the main one that have items (consistency pairs, robustness copies, grounding)."""
    return [(sub, full[subset == sub]) for sub in CONFIG_FOLDERS if (subset == sub).any()]


def export_all(bench: pd.DataFrame, figures: dict, data_root: Path, out_dir: Path, config: PipelineConfig,
               withheld: list[str] | None = None, while_tsvs: Callable[[Path], None] | None = None) -> dict:
    """Build everything in a staging folder and swap it in whole: no half-written export is ever visible.
    ``withheld``: selected items kept out of the export (listed in the manifest, so none vanishes unseen).
    The TSVs (base64 text: most of the bytes) are written and hashed in a worker beside everything else but the
    card (the Parquet shards first) when ``benchmark.render_workers`` allows one. ``while_tsvs(stage)`` runs in
    this process once everything but the TSVs and the card is in the staging folder (with a worker, while it is
    still writing the TSVs): the export reads its Parquet shards back there."""
    subset = bench["subset"] if "subset" in bench else pd.Series("main", index=bench.index)
    full, bench = bench, bench[subset == "main"]
    name = config.benchmark.name
    with staged_dir(out_dir) as stage:
        configs = _configs(full, subset)

        def parquet_and_the_rest() -> dict[str, dict]:
            """Everything but the TSVs and the card (which lists them), while the TSVs are written beside: the
            Parquet shards, the lmms-eval task, the answer key, the lexical trees and the summary; returns the
            sha256 and size of every file written so far outside a TSV folder."""
            write_parquet(bench, data_root, stage, config.benchmark.max_shard_bytes)
            for sub, part in configs:
                write_parquet(part, data_root, stage / sub, config.benchmark.max_shard_bytes)
            write_lmms_eval_task(stage, name, config.publish.repo_id)
            answer_key(full, stage)
            # public: how often each structure is offered as an option (what every reader already sees); how often
            # it is the key would give test answers away, so that tree goes with the private key
            tree = lexical_tree(offered_options(bench), label="option")
            atomic_write_bytes(stage / "lexical_tree.json", tree_json(tree))
            atomic_write_bytes(stage / "lexical_tree.html",
                               tree_html(tree, "medbench benchmark: lexical tree (items offering each structure)"))
            atomic_write_bytes(stage / "private" / "lexical_tree_keys.json",
                               tree_json(lexical_tree(bench, "answer_label")))
            text, charts = summary(bench, figures)
            atomic_write_bytes(stage / "summary" / "summary.md", text.encode("utf-8"))
            for chart, png in charts.items():
                atomic_write_bytes(stage / "summary" / chart, png)
            facts = file_facts(stage, [p for p in stage.rglob("*")
                                       if p.is_file() and "tsv" not in p.relative_to(stage).parts])
            if while_tsvs is not None:
                while_tsvs(stage)
            return facts
        tables = [(part, stage / sub, f"{name}_{sub.upper()}") for sub, part in configs
                  if sub != "grounding"]  # a box answer has no multiple-choice TSV form
        job = (tables + [(bench, stage, name)], data_root, stage, (stage / "tsv", name))
        early, (tsvs,) = run_beside(parquet_and_the_rest, [(write_tsvs, job)], config.benchmark.render_workers)
        if isinstance(tsvs, BaseException):
            raise tsvs
        card = build_card(bench, figures, registry_of(config), FEATURES, config.fingerprint(),
                          name, folder=stage)
        atomic_write_bytes(stage / "README.md", str(card).encode("utf-8"))
        # the TSV writer's facts stand for its files (a partial file hashed early is dropped); the rest is hashed now
        early = {k: v for k, v in early.items() if k not in tsvs and (stage / k).is_file()}
        known = {*early, *tsvs}
        rest = [p for p in stage.rglob("*") if p.is_file() and p.relative_to(stage).as_posix() not in known]
        files = dict(sorted({**early, **file_facts(stage, rest), **tsvs}.items()))
        manifest = {"pipeline_version": PIPELINE_VERSION, "config_fingerprint": config.fingerprint(),
                    "seed": config.seed, "items": len(bench),
                    "configs": {sub: len(part) for sub, part in configs},
                    "splits": {s: int((bench["split"] == s).sum()) for s in ("val", "test")}, "files": files,
                    "withheld_cross_split_marked": sorted(withheld or [])}
        atomic_write_bytes(stage / "manifest.json", (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode())
    return manifest
