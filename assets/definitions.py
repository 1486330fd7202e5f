"""The one Definitions object (`dg dev` / `dagster dev` find it via [tool.dg] / [tool.dagster] in pyproject)."""


import dagster as dg

from assets.annotate import roi_annotations, roi_exports
from assets.automation import (
    automation_sensor,
    global_assets,
    manual_assets,
    per_dataset_assets,
)
from assets.candidates import option_pools, qa_candidates, question_templates
from assets.cluster import cluster_jobs
from assets.evaluate import evaluation
from assets.export import benchmark_exports
from assets.gates import candidate_gates
from assets.ingest import raw_samples
from assets.publish import hub_push
from assets.render import rendered_items, review_sheets
from assets.resources import LLMResource, MedbenchResource
from assets.select import benchmark
from assets.sensors import registry_schedule_factory, registry_sensor_factory
from assets.standardize import standardized
from assets.validity import CHECKS
from assets.vocab import label_vocab, lexical_tree_export
from pipelines.config import AutomationSettings

# The flow: describe (per dataset, rows only) -> candidates -> gate -> select -> render -> export.
PER_DATASET = per_dataset_assets([raw_samples, standardized])
GLOBAL: list[dg.AssetsDefinition] = global_assets([label_vocab, lexical_tree_export, question_templates, option_pools,
                                                   qa_candidates, candidate_gates, benchmark, rendered_items,
                                                   review_sheets, benchmark_exports])
# opt-in in `medbench build` (annotate.enabled, or --select): annotating every region costs seconds per volume
ANNOTATE: list[dg.AssetsDefinition] = manual_assets([roi_annotations, roi_exports])
PUBLISH: list[dg.AssetsDefinition] = manual_assets([hub_push])  # opt-in: never part of a default build
EVALUATE: list[dg.AssetsDefinition] = manual_assets([evaluation])  # opt-in: needs a predictions file
ALL_ASSETS = PER_DATASET + GLOBAL + ANNOTATE + PUBLISH + EVALUATE
ALL_CHECKS = CHECKS  # checks defined apart from their asset (the exported files judged as a reader gets them)
PER_DATASET_KEYS = [k for a in PER_DATASET for k in a.keys]
GLOBAL_KEYS = [k for a in GLOBAL for k in a.keys]

dataset_job = dg.define_asset_job("dataset_job", selection=dg.AssetSelection.assets(*PER_DATASET),
                                  description="All per-dataset stages for one dataset partition.")
global_job = dg.define_asset_job("global_job", selection=dg.AssetSelection.assets(*GLOBAL),
                                 description="The cross-dataset stages (vocabulary, questions, benchmark, exports).")
_schedule = AutomationSettings.from_env()
_target = dg.AssetSelection.assets(*ALL_ASSETS)

defs = dg.Definitions(
    assets=ALL_ASSETS,
    asset_checks=ALL_CHECKS,
    jobs=[dataset_job, global_job, *cluster_jobs(PER_DATASET)],
    sensors=[registry_sensor_factory(PER_DATASET_KEYS, GLOBAL_KEYS, _target), automation_sensor(GLOBAL)],
    schedules=[registry_schedule_factory(PER_DATASET_KEYS, GLOBAL_KEYS, _target, _schedule.cron, _schedule.timezone)],
    resources={"medbench": MedbenchResource(), "llm": LLMResource()},
    executor=dg.in_process_executor,  # one process per run: a partition run imports the definitions once
)


def celery_dataset_job() -> dg.JobDefinition:
    """Reconstructable entry point (`dg.reconstructable(celery_dataset_job)`) for workers and tests."""
    return defs.resolve_job_def("dataset_job_celery")
