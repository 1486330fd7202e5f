"""Blind baselines on the main config, and how much a model gains over the best of them per task.

Offline (no model): analytic chance (mean 1/k), a seeded uniform random letter, the text-only model of
selection (pipelines/validity/blind.py: question and option text, cross-fitted by leakage component) and its
options-only prior rule (how often an option text was the key in the other folds). With a model: its normal
run and two runs that keep the question but not the image (``blank`` grey image, ``shuffled`` another item's
image; see runner.py). Single-answer items only: the blind models and the random letter answer one letter.
Multimodal gain per task = model accuracy - the best blind accuracy in that task.
"""

from __future__ import annotations

import io
import json
import zlib
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from pipelines.evaluate.bench import Benchmark, BenchmarkError  # noqa: E402
from pipelines.evaluate.intervals import mean_interval  # noqa: E402
from pipelines.evaluate.score import EvalSettings, Scorer  # noqa: E402
from pipelines.storage import atomic_write_bytes  # noqa: E402
from pipelines.validity.blind import blind_predictions, fold_rows, prior_predictions

OFFLINE = ("random", "text_only", "options_only")
MODEL_RUNS = ("model", "blank_image", "shuffled_image")


def _items(bench: Benchmark, split: str) -> pd.DataFrame:
    """Single-answer main items of both splits with the columns the blind model reads."""
    key = bench.key[(bench.key["config"] == "main") & ~bench.key["multi_answer"]]
    public = bench.public[["index", "question", "A", "B", "C", "D", "E"]]
    items = key.merge(public, on="index", how="left")
    if not (items["split"] == split).any():
        raise BenchmarkError(f"{bench.folder}: no single-answer main items with a key in the {split} split")
    items["unit_id"] = items["unit_id"].where(items["unit_id"].notna(), items["item_id"])
    items["group_id"] = items["group_id"].where(items["group_id"].notna(), items["item_id"])
    items["granularity"] = items["perceptual_granularity"]
    items["n_options"] = items[["A", "B", "C", "D", "E"]].notna().sum(axis=1)
    return items


def random_hits(items: pd.DataFrame, seed: int) -> pd.Series:
    """A uniform random letter per item, drawn from (seed, item_id)."""
    hits = []
    for iid, k, ans in zip(items["item_id"], items["n_options"], items["answer"]):
        rng = np.random.default_rng([seed, zlib.crc32(str(iid).encode())])
        hits.append(float("ABCDE"[int(rng.integers(0, k))] == ans))
    return pd.Series(hits, index=items.index)


def offline_runs(bench: Benchmark, split: str, seed: int, folds: int = 5) -> dict[str, pd.DataFrame]:
    """{run: item_id, clinical_vqa_task, group, hit} on the split's single-answer main items."""
    items = _items(bench, split)
    prepared = fold_rows(items, folds)
    runs = {"random": items.assign(hit=random_hits(items, seed))}
    for name, pred in (("text_only", blind_predictions(items, folds, seed, prepared)),
                       ("options_only", prior_predictions(items, folds, prepared))):
        runs[name] = items.merge(pred[["item_id", "hit"]].assign(hit=lambda d: d["hit"].astype(float)),
                                 on="item_id", how="inner")
    out = {}
    for name, frame in runs.items():
        frame = frame[frame["split"] == split]
        group = frame["split_group"].where(frame["split_group"].notna(), frame["group_id"]).astype(str)
        out[name] = frame.assign(group=group)[["item_id", "clinical_vqa_task", "group", "hit"]]
    return out


def model_run(bench: Benchmark, preds: pd.DataFrame, split: str, rules: str) -> pd.DataFrame:
    """A predictions file scored on the split's single-answer main items (item_id, task, group, hit)."""
    scorer = Scorer(bench, preds, EvalSettings(split=split, configs=("main",), rules=rules))
    rows = scorer.rows[(scorer.rows["config"] == "main") & (scorer.rows["split"] == split)
                       & ~scorer.rows["multi_answer"]]
    return scorer.score_items(rows)[["item_id", "clinical_vqa_task", "group", "hit"]]


def baseline_report(runs: dict[str, pd.DataFrame], chance: dict, seed: int, interval: str = "wilson") -> dict:
    """Accuracy with intervals per run overall and per task, and the model's gain over the best blind run."""
    out = {"chance": chance, "runs": {}, "gain": None}
    for name, frame in runs.items():
        overall = mean_interval(frame["hit"], frame["group"], interval, seed, f"baseline/{name}")
        by = {str(t): mean_interval(p["hit"], p["group"], interval, seed, f"baseline/{name}/{t}")
              for t, p in frame.groupby("clinical_vqa_task", sort=True)}
        out["runs"][name] = {"overall": overall, "by_task": by}
    if "model" in runs:
        blind = [n for n in runs if n != "model"]
        tasks = sorted(out["runs"]["model"]["by_task"])
        gain = {}
        for t in ["(all)", *tasks]:
            def acc(n):
                r = out["runs"][n]
                return r["overall"]["mean"] if t == "(all)" else r["by_task"].get(t, {}).get("mean")
            scores = {n: acc(n) for n in blind if acc(n) is not None}
            best = max(scores, key=scores.get) if scores else None
            gain[t] = {"model": acc("model"), "best_blind": best, "best_blind_accuracy": scores.get(best),
                       "gain": None if best is None else round(acc("model") - scores[best], 6)}
        out["gain"] = gain
    return out


def chart(report: dict) -> bytes:
    """Accuracy per task for every run (grouped horizontal bars)."""
    runs = report["runs"]
    tasks = sorted({t for r in runs.values() for t in r["by_task"]})
    names = list(runs)
    fig, ax = plt.subplots(figsize=(8, 0.3 * max(len(tasks), 2) * max(len(names), 1) + 1.5), dpi=90)
    height = 0.8 / max(len(names), 1)
    for j, name in enumerate(names):
        ys = [i + j * height for i in range(len(tasks))]
        ax.barh(ys, [100 * runs[name]["by_task"].get(t, {}).get("mean", 0.0) for t in tasks], height=height,
                label=name)
    ax.set_yticks([i + 0.4 - height / 2 for i in range(len(tasks))])
    ax.set_yticklabels(tasks, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("accuracy (%)", fontsize=8)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("model and blind baselines by task", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def markdown(report: dict) -> str:
    lines = ["# Blind baselines", "", f"Split {report['split']}; single-answer main items; analytic chance "
             f"{100 * report['chance']['overall']:.1f} %.", "", "| run | items | accuracy % [95 % CI] |",
             "|---|---:|---|"]
    for name, r in report["runs"].items():
        o = r["overall"]
        lines.append(f"| {name} | {o['n']} | {100 * o['mean']:.1f} [{100 * o['lo']:.1f}, {100 * o['hi']:.1f}] |")
    if report["gain"]:
        lines += ["", "## Multimodal gain (model - best blind run)", "", "| task | model % | best blind | blind % | "
                  "gain pp |", "|---|---:|---|---:|---:|"]
        for t, g in report["gain"].items():
            if g["best_blind"] is None:
                continue
            lines.append(f"| {t} | {100 * g['model']:.1f} | {g['best_blind']} | {100 * g['best_blind_accuracy']:.1f} "
                         f"| {100 * g['gain']:.1f} |")
    return "\n".join(lines + ["", "![by task](baselines_by_task.png)", ""])


def write_baselines(report: dict, out_dir: Path) -> dict[str, Path]:
    out_dir = Path(out_dir)
    paths = {"json": out_dir / "baselines.json", "markdown": out_dir / "baselines.md",
             "chart": out_dir / "baselines_by_task.png"}
    atomic_write_bytes(paths["json"], (json.dumps(report, indent=1, sort_keys=True) + "\n").encode())
    atomic_write_bytes(paths["markdown"], markdown(report).encode())
    atomic_write_bytes(paths["chart"], chart(report))
    return paths


def baselines(bench: Benchmark, split: str, seed: int, model_preds: dict[str, pd.DataFrame] | None = None,
              rules: str = "medbench", interval: str = "wilson", folds: int = 5) -> dict:
    """The whole baseline report for ``split``: offline runs, plus the model runs given (model, blank_image,
    shuffled_image predictions)."""
    runs = offline_runs(bench, split, seed, folds)
    for name in MODEL_RUNS:
        if model_preds and name in model_preds:
            runs[name] = model_run(bench, model_preds[name], split, rules)
    items = _items(bench, split)
    items = items[items["split"] == split]
    chance = {"overall": round(float((1 / items["n_options"]).mean()), 6),
              "by_task": {str(t): round(float((1 / p["n_options"]).mean()), 6)
                          for t, p in items.groupby("clinical_vqa_task", sort=True)}}
    return {"split": split, "benchmark": bench.version, **baseline_report(runs, chance, seed, interval)}
