"""Benchmark summary: counts per tag as markdown, and bar charts as PNG (matplotlib, Agg)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

CHARTS = {"clinical_vqa_task": "items per clinical VQA task", "department": "items per department",
          "modality": "items per modality", "perceptual_granularity": "items per perceptual granularity",
          "n_options": "items per option count", "answer": "correct letter (single-answer items)"}


def chart_png(counts: pd.Series, title: str) -> bytes:
    fig, ax = plt.subplots(figsize=(7, 0.35 * max(len(counts), 3) + 1), dpi=90)
    ax.barh([str(i) for i in counts.index][::-1], counts.to_numpy()[::-1], color="#4c72b0")
    ax.set_title(title, fontsize=10)
    ax.tick_params(labelsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def summary(bench: pd.DataFrame, figures: dict) -> tuple[str, dict[str, bytes]]:
    """Markdown text and {file name: PNG bytes}; the markdown links the charts by file name."""
    charts, lines = {}, ["# Benchmark summary", "",
                         f"items: {len(bench)} (val {int((bench['split'] == 'val').sum())}, "
                         f"test {int((bench['split'] == 'test').sum())}); datasets: {bench['dataset_id'].nunique()}; "
                         f"answer labels: {bench['answer_label'].nunique()}", ""]
    for key in ("analytic_chance", "random_guess", "text_only_accuracy", "text_only_flagged_units"):
        if key in figures:
            v = figures[key]
            lines.append(f"- {key.replace('_', ' ')}: {v:.4f}" if isinstance(v, float) else f"- {key.replace('_', ' ')}: {v}")
    gated = {k.removeprefix("gated_out_"): v for k, v in sorted(figures.items()) if k.startswith("gated_out_")}
    if gated:
        lines.append("- candidate units dropped by the readability gates: "
                     + ", ".join(f"{rule} {n}" for rule, n in gated.items()))
    lines.append("")
    for col, title in CHARTS.items():
        data = bench[~bench["multi_answer"]] if col == "answer" else bench
        counts = data[col].value_counts().sort_index()
        name = f"{col}.png"
        charts[name] = chart_png(counts, title)
        lines += [f"## {title}", "", "| value | items |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in counts.items()]
        lines += ["", f"![{title}]({name})", ""]
    return "\n".join(lines), charts
