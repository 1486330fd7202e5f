"""evaluation: score a predictions file on the export and show the report and its charts in the UI (opt-in).

Not part of a default build: materialize it from the UI's launchpad or `dagster asset materialize` with run
config ``ops: {evaluation: {config: {predictions: PATH}}}``; without a predictions file it is skipped.
"""

import base64

import dagster as dg

from assets.export import benchmark_exports
from assets.resources import MedbenchResource


class EvaluationConfig(dg.Config):
    predictions: str = ""  # .jsonl or a VLMEvalKit result file; empty: nothing to do
    split: str = ""  # val/test; empty: test when the predictions answer test items
    configs: list[str] = []  # main/consistency/robustness/grounding; empty: every config answered
    rules: str = "medbench"
    interval: str = "wilson"
    box_scale: str = "auto"
    out_dir: str = ""  # empty: <data_root>/evaluations/<predictions stem>


def _embedded(markdown: str, charts: dict[str, bytes]) -> str:
    """The report's Markdown with its chart links replaced by inline PNGs (the UI cannot open local files)."""
    for name, png in charts.items():
        markdown = markdown.replace(f"(charts/{name})", f"(data:image/png;base64,{base64.b64encode(png).decode()})")
    return markdown


@dg.asset(group_name="evaluate", deps=[benchmark_exports], output_required=False,
          description="Scores a predictions file (run config `predictions`) on the exported benchmark: accuracy "
                      "with 95 % intervals per task/department/modality/granularity/dataset, circular, consistency, "
                      "robustness and grounding sections; the report and its charts are the metadata.")
def evaluation(context: dg.AssetExecutionContext, config: EvaluationConfig, medbench: MedbenchResource):
    from pathlib import Path

    from pipelines.evaluate.report import markdown, overview_cells
    from pipelines.evaluate.run import evaluate
    from pipelines.evaluate.score import EvalSettings
    if not config.predictions:
        context.log.info("evaluation skipped: no predictions file (set ops.evaluation.config.predictions)")
        return
    cfg = medbench.config
    predictions = Path(config.predictions)
    out = Path(config.out_dir) if config.out_dir else cfg.data_root / "evaluations" / f"{predictions.stem}.eval"
    settings = EvalSettings(split=config.split or None, configs=tuple(config.configs) or None, rules=config.rules,
                            interval=config.interval, seed=cfg.seed, box_scale=config.box_scale)
    result = evaluate(cfg.data_root / "benchmark", predictions, settings, out)
    sec = result.report["sections"]
    meta: dict = {"predictions": predictions.name, "split": sec["coverage"]["split"],
                  "configs": ", ".join(sec["coverage"]["configs"]),
                  "benchmark_content_sha256": result.report["benchmark"]["content_sha256"],
                  "report": dg.MetadataValue.md(_embedded(markdown(result.report, list(result.charts)), result.charts)),
                  "report_path": dg.MetadataValue.path(str(result.paths["markdown"]))}
    for label, cell in overview_cells(sec):
        meta[label.replace(" ", "_").replace(">=", "ge").replace(".", "")] = dg.MetadataValue.float(cell["mean"])
    yield dg.MaterializeResult(metadata=meta)
