"""The one Definitions object (dagster dev and `dagster asset materialize` find it via pyproject)."""


import dagster as dg

from assets.annotate import roi_annotations, roi_exports
from assets.benchmark import benchmark, benchmark_exports
from assets.gates import candidate_gates
from assets.ingest import raw_samples
from assets.publish import hub_push
from assets.questions import option_pools, qa_candidates, question_templates
from assets.render import rendered_items, review_sheets
from assets.resources import LLMResource, MedbenchResource
from assets.sensors import registry_sensor_factory
from assets.standardize import standardized
from assets.vocab import label_vocab, lexical_tree_export

# The flow: describe (per dataset, rows only) -> candidates -> gate -> select -> render -> export.
PER_DATASET = [raw_samples, standardized]
GLOBAL: list[dg.AssetsDefinition] = [label_vocab, lexical_tree_export, question_templates, option_pools, qa_candidates,
                                     candidate_gates, benchmark, rendered_items, review_sheets, benchmark_exports,
                                     roi_annotations, roi_exports]
PUBLISH: list[dg.AssetsDefinition] = [hub_push]  # opt-in: never part of a default build
ALL_ASSETS = PER_DATASET + GLOBAL + PUBLISH

dataset_job = dg.define_asset_job("dataset_job", selection=dg.AssetSelection.assets(*PER_DATASET),
                                  description="All per-dataset stages for one dataset partition.")

defs = dg.Definitions(
    assets=ALL_ASSETS,
    jobs=[dataset_job],
    sensors=[registry_sensor_factory(dataset_job)],
    resources={"medbench": MedbenchResource(), "llm": LLMResource()},
)
