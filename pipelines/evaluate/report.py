"""The evaluation report: report.json, report.md and one PNG chart per breakdown (matplotlib, Agg).

Nothing in it depends on when or where it was made (no dates, no absolute paths, sorted keys, fixed float
precision, PNGs without a software stamp), so two evaluations of the same predictions on the same export are
byte-identical. It records what a reader needs to reproduce the numbers: the benchmark's content hash and
build settings, the predictions file's hash, the prompt templates, the extraction rules and the judge.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from pipelines.export import answers  # noqa: E402
from pipelines.export.prompt import TEMPLATES  # noqa: E402
from pipelines.storage import atomic_write_bytes  # noqa: E402

TITLES = {"clinical_vqa_task": "clinical VQA task", "department": "department", "modality": "modality",
          "perceptual_granularity": "perceptual granularity", "dataset_id": "source dataset"}
REPORT_VERSION = 1


def method(settings, judge_info: dict | None) -> dict:
    return {"split": None, "interval": {"method": settings.interval, "level": 0.95,
                                        "bootstrap": {"resamples": 2000, "seed": settings.seed,
                                                      "cluster": "split_group (else group_id, else item)"}},
            "extraction": {"rules": settings.rules, "description": answers.__doc__},
            "prompt_templates": TEMPLATES, "judge": judge_info, "box_scale": settings.box_scale,
            "unanswered": "a key row without a usable prediction counts as wrong"}


def build_report(bench_version: dict, private_key: bool, pred_info: dict, settings, sections: dict,
                 judge_info: dict | None = None) -> dict:
    m = method(settings, judge_info)
    m["split"] = sections["coverage"]["split"]
    return {"report_version": REPORT_VERSION,
            "benchmark": {**bench_version, "answer_key": "private" if private_key else "public val answers only"},
            "predictions": pred_info, "method": m, "sections": sections}


def _pct(cell: dict | None) -> str:
    if not cell:
        return "-"
    return f"{100 * cell['mean']:.1f} [{100 * cell['lo']:.1f}, {100 * cell['hi']:.1f}]"


def _num(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def chart_png(cells: list[dict], title: str, xlabel: str = "accuracy (%)", marker: str = "chance") -> bytes:
    """Horizontal bars with 95 % interval whiskers and, where a cell has ``chance``, a red tick there."""
    cells = list(reversed(cells))
    fig, ax = plt.subplots(figsize=(7.5, 0.38 * max(len(cells), 3) + 1.2), dpi=90)
    y = range(len(cells))
    means = [100 * c["mean"] for c in cells]
    err = [[100 * (c["mean"] - c["lo"]) for c in cells], [100 * (c["hi"] - c["mean"]) for c in cells]]
    ax.barh(list(y), means, xerr=err, color="#4c72b0", ecolor="#222222", capsize=3)
    for i, c in zip(y, cells):
        if c.get("chance") is not None:
            ax.plot([100 * c["chance"]] * 2, [i - 0.4, i + 0.4], color="#c44e52", linewidth=2)
    ax.set_yticks(list(y))
    ax.set_yticklabels([f"{c.get('value', c.get('label'))} (n={c['n']})" for c in cells], fontsize=8)
    ax.set_xlim(0, 100)
    ax.set_xlabel(xlabel + (f"; red: {marker}" if any(c.get("chance") is not None for c in cells) else ""), fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def charts(report: dict) -> dict[str, bytes]:
    """{file name: PNG}: one per main breakdown, an overview of the sections, robustness when present."""
    sec = report["sections"]
    out = {}
    if "main" in sec:
        for col, cells in sec["main"]["by"].items():
            out[f"main_by_{col}.png"] = chart_png(cells, f"accuracy by {TITLES.get(col, col)}")
    overview = []
    for label, cell in overview_cells(sec):
        overview.append({**cell, "label": label})
    if overview:
        out["overview.png"] = chart_png(overview, "sections", "score (%)")
    if sec.get("robustness", {}).get("by_kind_severity"):
        cells = [{**r["perturbed_accuracy"], "label": f"{r['kind']} s{r['severity']}", "chance": r["base_accuracy"]}
                 for r in sec["robustness"]["by_kind_severity"]]
        out["robustness.png"] = chart_png(cells, "accuracy of perturbed copies", marker="the same items unperturbed")
    if sec.get("grounding", {}).get("by", {}).get("clinical_vqa_task"):
        out["grounding_by_clinical_vqa_task.png"] = chart_png(sec["grounding"]["by"]["clinical_vqa_task"],
                                                              "grounding: IoU >= 0.5 by task", "boxes (%)")
    return out


def overview_cells(sec: dict) -> list[tuple[str, dict]]:
    rows = []
    if "main" in sec:
        rows.append(("main accuracy", sec["main"]["accuracy"]))
    if "circular" in sec:
        rows.append(("circular accuracy", sec["circular"]["accuracy"]))
    if "consistency" in sec:
        rows.append(("mirrored pairs both right", sec["consistency"]["both_right"]))
    if sec.get("robustness", {}).get("overall"):
        rows.append(("perturbed copies accuracy", sec["robustness"]["overall"]["perturbed_accuracy"]))
    if "grounding" in sec:
        rows.append(("grounding IoU >= 0.5", sec["grounding"]["iou_at_0.5"]))
    return rows


def markdown(report: dict, chart_names: list[str]) -> str:
    b, p, m, sec = report["benchmark"], report["predictions"], report["method"], report["sections"]
    cov = sec["coverage"]
    lines = ["# Evaluation report", "",
             f"- predictions: `{p['file']}` (sha256 `{p['sha256'][:16]}`, {p['rows']} rows, {p['format']})",
             f"- benchmark: content sha256 `{b['content_sha256'][:16]}` ({b['public_files']} public files), "
             f"pipeline {b.get('pipeline_version')}, settings `{b.get('config_fingerprint')}`, seed {b.get('seed')}; "
             f"answer key: {b['answer_key']}",
             f"- split: {cov['split']}; configs: {', '.join(cov['configs'])}"
             + (f" (absent from the export: {', '.join(cov['configs_absent'])})" if cov["configs_absent"] else ""),
             f"- intervals: 95 % {m['interval']['method']} (non-binary scores: cluster bootstrap, "
             f"{m['interval']['bootstrap']['resamples']} resamples, seed {m['interval']['bootstrap']['seed']})",
             f"- extraction rules: {m['extraction']['rules']}; judge: "
             + (f"{m['judge']['model']} (temperature 0, cached)" if m["judge"] else "none")
             + "; unanswered rows count as wrong"]
    if cov["predictions_unknown_index"] or cov["predictions_other_split"]:
        lines.append(f"- ignored predictions: {cov['predictions_unknown_index']} with an index this export does not "
                     f"have, {cov['predictions_other_split']} of the other split")
    lines += ["", "| section | items | score % [95 % CI] |", "|---|---:|---|"]
    lines += [f"| {label} | {cell['n']} | {_pct(cell)} |" for label, cell in overview_cells(sec)]
    lines.append("")
    if "main" in sec:
        mn = sec["main"]
        single = mn["single_answer"]
        lines += ["## Main", "", f"{mn['items']} items, {mn['answered']} answered. Accuracy {_pct(mn['accuracy'])}; "
                  f"single-answer {_pct(single)} against chance "
                  f"{_num(single['chance'])}.", "",
                  "Read by rule: " + ", ".join(f"{k} {v}" for k, v in mn["extraction"].items()), ""]
        if "multi_answer" in mn:
            ma = mn["multi_answer"]
            lines += [f"Multi-answer items ({ma['items']}): exact match {_pct(ma['exact_match'])}, "
                      f"ACC_mcq {_pct(ma['acc_mcq'])}, recall_mcq {_pct(ma['recall_mcq'])}.", ""]
        for col, cells in mn["by"].items():
            lines += [f"### By {TITLES.get(col, col)}", "", "| value | items | accuracy % [95 % CI] | chance % |",
                      "|---|---:|---|---:|"]
            lines += [f"| {c['value']} | {c['n']} | {_pct(c)} | "
                      f"{_num(c.get('chance'))} |" for c in cells]
            if f"main_by_{col}.png" in chart_names:
                lines += ["", f"![accuracy by {TITLES.get(col, col)}](charts/main_by_{col}.png)"]
            lines.append("")
    if "circular" in sec:
        c = sec["circular"]
        lines += ["## Circular", "", f"{c['items']} single-answer items, {c['rotations']} rotations "
                  f"({c['missing_rotations']} without a prediction). All rotations right: {_pct(c['accuracy'])}; "
                  f"rotation 0 alone: {_pct(c['vanilla_accuracy'])}.", ""]
    if "consistency" in sec:
        c = sec["consistency"]
        lines += ["## Consistency (mirrored pairs)", "", f"{c['pairs']} pairs. Both right: {_pct(c['both_right'])}; "
                  f"same correctness: {_pct(c['agreement'])}; original {_pct(c['original_accuracy'])}, mirrored "
                  f"{_pct(c['mirrored_accuracy'])}.", ""]
    if "robustness" in sec:
        r = sec["robustness"]
        lines += ["## Robustness", "", "| perturbation | severity | copies | unperturbed % | perturbed % [95 % CI] | "
                  "drop pp [95 % CI] | flipped % |", "|---|---:|---:|---:|---|---|---:|"]
        for x in r["by_kind_severity"]:
            d = x["drop"]
            lines.append(f"| {x['kind']} | {x['severity']} | {x['copies']} | {100 * x['base_accuracy']:.1f} | "
                         f"{_pct(x['perturbed_accuracy'])} | {_num(d['mean'])} [{_num(d['lo'])}, {_num(d['hi'])}] | "
                         f"{_num(x['flip_rate'])} |")
        if r["base_answered"] < r["items"] - r["unmatched_copies"]:
            lines.append(f"\nOnly {r['base_answered']} copies have an answered main item: the unperturbed accuracy "
                         "counts the others as wrong (predict the main config too).")
        if r["unmatched_copies"]:
            lines.append(f"\n{r['unmatched_copies']} copies have no main item in this split and are left out.")
        if "robustness.png" in chart_names:
            lines += ["", "![robustness](charts/robustness.png)"]
        lines.append("")
    if "grounding" in sec:
        g = sec["grounding"]
        lines += ["## Grounding", "", f"{g['items']} items, {g['answered']} answered, {g['unparsed']} without a "
                  f"readable box. IoU >= 0.5: {_pct(g['iou_at_0.5'])}; mean IoU {_pct(g['mean_iou'])}.", ""]
    if "overview.png" in chart_names:
        lines += ["![sections](charts/overview.png)", ""]
    return "\n".join(lines) + "\n"


def dumps(report: dict) -> bytes:
    return (json.dumps(report, indent=1, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")


def write_report(report: dict, items: pd.DataFrame, out_dir: Path,
                 pngs: dict[str, bytes] | None = None) -> dict[str, Path]:
    """report.json, report.md, items.csv (one row per scored key row: what was read and whether it was right,
    never the key itself) and charts/*.png under ``out_dir``."""
    out_dir = Path(out_dir)
    pngs = charts(report) if pngs is None else pngs
    paths = {"json": out_dir / "report.json", "markdown": out_dir / "report.md", "items": out_dir / "items.csv"}
    atomic_write_bytes(paths["json"], dumps(report))
    atomic_write_bytes(paths["markdown"], markdown(report, list(pngs)).encode("utf-8"))
    cols = [c for c in ("config", "split", "index", "item_id", "clinical_vqa_task", "answered", "rule", "extracted",
                        "hit", "acc_mcq", "recall_mcq", "iou") if c in items]
    atomic_write_bytes(paths["items"], items.sort_values("index")[cols].to_csv(index=False, lineterminator="\n")
                       .encode("utf-8"))
    for name, png in pngs.items():
        paths[name] = out_dir / "charts" / name
        atomic_write_bytes(paths[name], png)
    return paths
