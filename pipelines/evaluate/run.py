"""One evaluation: read the export and the predictions, score, write the report."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pipelines.evaluate.bench import load_benchmark
from pipelines.evaluate.predictions import read_predictions
from pipelines.evaluate.report import build_report, charts, write_report
from pipelines.evaluate.score import EvalSettings, score


@dataclass
class Evaluation:
    report: dict
    items: pd.DataFrame
    paths: dict[str, Path]
    charts: dict[str, bytes]


def default_out_dir(predictions: Path) -> Path:
    """``<predictions stem>.eval/`` beside the predictions file."""
    predictions = Path(predictions)
    return predictions.parent / f"{predictions.stem}.eval"


def evaluate(folder: Path, predictions: Path, settings: EvalSettings, out_dir: Path | None = None,
             judge=None) -> Evaluation:
    """Score ``predictions`` on the export in ``folder`` and write the report to ``out_dir``."""
    bench = load_benchmark(folder)
    preds, info = read_predictions(predictions)
    sections, items = score(bench, preds, settings, judge)
    report = build_report(bench.version, bench.private_key, info, settings, sections,
                          judge.describe() if judge else None)
    pngs = charts(report)
    paths = write_report(report, items, out_dir or default_out_dir(predictions), pngs)
    return Evaluation(report, items, paths, pngs)
