"""An lmms-eval task folder for the export: `lmms_eval/<name>/` with task YAMLs and a self-contained utils.py.

One task per config and split that has rows (``<name>_val``, ``<name>_test``, ``<name>_consistency_test``,
...). Each YAML loads the exported Parquet shards with the ``parquet`` builder; the shard paths are relative
to the YAML, which lmms-eval resolves against the task folder, so the folder works wherever the export is
copied. With a Hub repository id, ``<task>_hub.yaml`` variants load the same files from the Hub.

utils.py embeds the export's prompt builder and answer-reading rules verbatim (pipelines/export/prompt.py and
answers.py), so lmms-eval shows and reads exactly what ``medbench run-model`` and ``medbench evaluate`` do.
``process_results`` scores val items whose key is public (letters; GMAI-MMBench set scoring for multi-answer
items); every task also writes its replies as ``<task>_predictions.jsonl`` (index, prediction) for
``medbench evaluate``, which scores test, grounding, consistency and robustness with the private key.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import yaml

from pipelines.export import answers, prompt
from pipelines.storage import atomic_write_bytes


class Function(str):
    """A YAML scalar lmms-eval reads as a function of utils.py (the ``!function`` tag)."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(Function, lambda dumper, value: dumper.represent_scalar("!function", str(value)))

CONFIG_FOLDERS = {"main": "", "consistency": "consistency", "robustness": "robustness", "grounding": "grounding"}
SPLITS = ("val", "test")

TEMPLATE = {
    "output_type": "generate_until",
    "doc_to_visual": Function("utils.doc_to_visual"),
    "doc_to_text": Function("utils.doc_to_text"),
    "doc_to_target": Function("utils.doc_to_target"),
    "process_results": Function("utils.process_results"),
    "generation_kwargs": {"max_new_tokens": 128, "temperature": 0, "do_sample": False},
    "lmms_eval_specific_kwargs": {"default": {"pre_prompt": "", "post_prompt": ""}},
    "metadata": [{"version": 1.0}],
}

TASK_FUNCTIONS = '''
import json
import os


def doc_to_visual(doc):
    return [doc["image"].convert("RGB")]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    kw = lmms_eval_specific_kwargs or {}
    return f"{kw.get('pre_prompt', '')}{build_prompt(doc)}{kw.get('post_prompt', '')}"


def doc_to_target(doc):
    return doc.get("answer") or ""


def score_doc(doc, reply):
    """1.0 / 0.0 for a val item with a public key (multi-answer: exact set match), None otherwise."""
    options = present_options(doc)
    key = doc.get("answer")
    if not key or not options:
        return None
    if doc.get("multi_answer"):
        hit, _, _ = multi_scores(extract_letters(reply, options)[0], frozenset(key.split(",")))
        return float(hit)
    return float(extract_choice(reply, options)[0] == key)


def process_results(doc, results):
    reply = results[0] if results else ""
    record = {"index": int(doc["index"]), "item_id": doc["item_id"], "split": doc["split"], "prediction": reply,
              "clinical_vqa_task": doc["clinical_vqa_task"]}
    return {"accuracy": {**record, "score": score_doc(doc, reply)}, "submission": record}


def aggregate_accuracy(results):
    scored = [r["score"] for r in results if r["score"] is not None]
    return sum(scored) / len(scored) if scored else float("nan")


def write_submission(results, task):
    """The replies as JSONL for `medbench evaluate` (folder: MEDBENCH_LMMS_OUT, default the working folder)."""
    path = os.path.join(os.environ.get("MEDBENCH_LMMS_OUT", os.getcwd()), f"{task}_predictions.jsonl")
    rows = sorted(results, key=lambda r: r["index"])
    with open(path + ".tmp", "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps({"index": r["index"], "item_id": r["item_id"], "prediction": r["prediction"]},
                                ensure_ascii=False) + "\\n")
    os.replace(path + ".tmp", path)
    return float(len(rows))
'''


def _source(module) -> str:
    """A module's code without its __future__ import (utils.py has one at the top). The module must stand alone:
    lmms-eval runs utils.py where the project is not installed."""
    lines = inspect.getsource(module).splitlines()
    if any(line.lstrip().startswith(("from pipelines", "import pipelines")) for line in lines):
        raise ValueError(f"{module.__name__} imports the project and cannot be embedded in the lmms-eval utils.py")
    return "\n".join(line for line in lines if line.strip() != "from __future__ import annotations")


def _dump(doc: dict) -> bytes:
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1000).encode("utf-8")


def task_names(name: str, config: str, split: str) -> str:
    return f"{name}_{split}" if config == "main" else f"{name}_{config}_{split}"


def write_lmms_eval_task(export_dir: Path, name: str, repo_id: str | None = None) -> list[Path]:
    """Write ``export_dir/lmms_eval/<name>/`` for every config and split with Parquet shards there."""
    export_dir = Path(export_dir)
    folder = export_dir / "lmms_eval" / name
    written, tasks = [], []
    for config, sub in CONFIG_FOLDERS.items():
        data = export_dir / sub / "data" if sub else export_dir / "data"
        for split in SPLITS:
            shards = sorted(data.glob(f"{split}-*.parquet"))
            if shards:
                tasks.append((config, split, [p.relative_to(export_dir).as_posix() for p in shards]))
    utils = ["# Generated by medbench with the export: do not edit (regenerate with the export instead).",
             "from __future__ import annotations", _source(prompt), _source(answers), TASK_FUNCTIONS]
    for config, split, _ in tasks:
        task = task_names(name, config, split)
        utils.append(f"\ndef submission_{task}(results):\n    return write_submission(results, {task!r})\n")
    atomic_write_bytes(folder / "utils.py", "\n\n".join(utils).encode("utf-8"))
    atomic_write_bytes(folder / "_default_template_yaml", _dump(TEMPLATE))
    written += [folder / "utils.py", folder / "_default_template_yaml"]
    for config, split, shards in tasks:
        task = task_names(name, config, split)
        metrics = [{"metric": "submission", "aggregation": Function(f"utils.submission_{task}"),
                    "higher_is_better": True}]
        if split == "val":
            metrics.insert(0, {"metric": "accuracy", "aggregation": Function("utils.aggregate_accuracy"),
                               "higher_is_better": True})
        local = {"task": task, "dataset_path": "parquet",
                 "dataset_kwargs": {"data_files": {split: [f"../../{p}" for p in shards]}},
                 "test_split": split, "metric_list": metrics, "include": "_default_template_yaml"}
        atomic_write_bytes(folder / f"{task}.yaml", _dump(local))
        written.append(folder / f"{task}.yaml")
        if repo_id:
            pattern = shards[0].rsplit("/", 1)[0] + f"/{split}-*.parquet"
            hub = {**local, "task": f"{task}_hub", "dataset_path": repo_id,
                   "dataset_kwargs": {"data_files": {split: pattern}}}
            atomic_write_bytes(folder / f"{task}_hub.yaml", _dump(hub))
            written.append(folder / f"{task}_hub.yaml")
    return written
