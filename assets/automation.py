"""Attributes the asset modules do not set themselves, applied over whole asset lists.

Kept here so that any asset added to a list in `assets.definitions` gets them automatically:
code version, owners, tags and kinds on every asset; an eager automation condition on the
cross-dataset assets (they follow their inputs once the `medbench_automation` sensor is on);
a retry policy and the `llm` pool on the steps that may call an LLM.
"""

from __future__ import annotations

import dagster as dg
from dagster._core.definitions.op_definition import OpDefinition

from assets.changes import current_code_version

OWNERS = ["team:medbench"]
LLM_POOL = "llm"
LLM_ASSETS = {"label_vocab", "question_templates"}  # assets whose step may call the LLM
LLM_RETRY = dg.RetryPolicy(max_retries=3, delay=10, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)
KINDS = {group: {"parquet", "python"} for group in
         ("ingest", "standardize", "vocab", "candidates", "gates", "select", "render", "export", "annotate")}
KINDS["publish"] = {"parquet", "huggingface"}
KINDS["evaluate"] = {"parquet", "python"}


CHECK_DESCRIPTIONS = {  # for checks whose asset module gives none (shown beside each check in the UI)
    "pool_too_small": "option pools with fewer labels than an item needs; such items are skipped and counted",
    "duplicate_options": "items offering the same option text twice",
    "answer_among_distractors": "items whose correct label also appears among the distractors",
    "letter_balance": "how often each letter is correct, per option count (should be close to uniform)",
    "stem_contains_option": "question stems that name one of the options (the answer would leak)",
    "split_disjoint": "no patient, volume or image group appears in both the val and the test split",
    "no_related_option": "no option is a synonym, ancestor or descendant of the answer",
    "no_cross_modality_option": "no option is a label of another imaging modality",
    "baselines": "chance, seeded random guess and text-only prior accuracy; units a text-only prior answers confidently",
}


def _spec_attrs(stage: str, automation: dg.AutomationCondition | None):
    def apply(spec: dg.AssetSpec) -> dg.AssetSpec:
        kinds = set(KINDS.get(spec.group_name or "", {"python"}))
        if spec.key.to_user_string() in LLM_ASSETS:
            kinds.add("openai")
        out = spec.replace_attributes(code_version=current_code_version(),
                                      automation_condition=automation if automation is not None
                                      else spec.automation_condition)
        return out.merge_attributes(owners=OWNERS, tags={"medbench/stage": stage}, kinds=kinds)
    return apply


def _with_llm_op_settings(asset: dg.AssetsDefinition) -> dg.AssetsDefinition:
    """Same asset, its op rebuilt with a retry policy and the `llm` pool (no public setter exists)."""
    if not {k.to_user_string() for k in asset.keys} & LLM_ASSETS:
        return asset
    op = asset.node_def
    new_op = OpDefinition.dagster_internal_init(
        compute_fn=op.compute_fn, name=op.name, ins=op.ins, outs=op.outs, description=op.description,
        config_schema=op.config_schema, required_resource_keys=op.required_resource_keys, tags=op.tags,
        version=None, retry_policy=LLM_RETRY, code_version=None, pool=LLM_POOL)
    return dg.AssetsDefinition.dagster_internal_init(**{**asset.get_attributes_dict(), "node_def": new_op})


def _with_check_descriptions(asset: dg.AssetsDefinition) -> dg.AssetsDefinition:
    """Fill in the description of checks declared without one (asset modules stay untouched)."""
    attrs = asset.get_attributes_dict()
    specs = attrs["check_specs_by_output_name"]
    if all(spec.description for spec in specs.values()):
        return asset
    attrs["check_specs_by_output_name"] = {
        out: spec if spec.description else spec._replace(description=CHECK_DESCRIPTIONS.get(spec.name, spec.name))
        for out, spec in specs.items()}
    return dg.AssetsDefinition.dagster_internal_init(**attrs)


def _finish(asset: dg.AssetsDefinition) -> dg.AssetsDefinition:
    return _with_check_descriptions(_with_llm_op_settings(asset))


def per_dataset_assets(assets: list[dg.AssetsDefinition]) -> list[dg.AssetsDefinition]:
    """Per-dataset assets: run by the registry sensor/schedule, so no automation condition here."""
    return [_finish(a.map_asset_specs(_spec_attrs("per_dataset", None))) for a in assets]


def manual_assets(assets: list[dg.AssetsDefinition]) -> list[dg.AssetsDefinition]:
    """Assets run only on request (publishing): attributes, no automation condition."""
    return [_finish(a.map_asset_specs(_spec_attrs("manual", None))) for a in assets]


def global_assets(assets: list[dg.AssetsDefinition]) -> list[dg.AssetsDefinition]:
    """Cross-dataset assets: rebuilt when any input updates (after all in-flight inputs finish)."""
    return [_finish(a.map_asset_specs(_spec_attrs("cross_dataset", dg.AutomationCondition.eager()))) for a in assets]


def automation_sensor(assets: list[dg.AssetsDefinition]) -> dg.AutomationConditionSensorDefinition:
    return dg.AutomationConditionSensorDefinition(
        "medbench_automation", target=dg.AssetSelection.assets(*assets),
        default_status=dg.DefaultSensorStatus.STOPPED, minimum_interval_seconds=30,
        description="Evaluates the cross-dataset assets' automation conditions: when a dataset partition "
                    "updates, label_vocab ... benchmark_exports are rebuilt once it and its siblings are done.")
