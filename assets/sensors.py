"""Keep the dataset partitions in step with the registry: add, re-run changed, delete removed.

The registry sensor (every minute) and the schedule (a cron, nightly by default) run the same
detection (`assets.changes.plan_changes`); both are stopped by default. Changed datasets get a
run of their per-dataset assets; removed datasets lose their partition and outputs, and the
cross-dataset assets are rebuilt without them. After a dataset run, the cross-dataset assets
follow through their automation condition (the `medbench_automation` sensor).
"""

from __future__ import annotations

import json

import dagster as dg

from assets.changes import plan_changes, remove_datasets
from assets.partitions import datasets_partitions
from pipelines.config import PipelineConfig
from pipelines.source import RegistryError
from pipelines.sources.registry import registry_of

MAX_REQUESTS_PER_TICK = 50


def _requests(instance: dg.DagsterInstance, per_dataset: list[dg.AssetKey], global_keys: list[dg.AssetKey],
              requested: dict[str, str]):
    """(plan, run requests) for what changed; `requested` holds versions already asked for."""
    config = PipelineConfig.load()
    plan = plan_changes(instance, registry_of(config), config, per_dataset)
    todo = [ds for ds in plan.stale if requested.get(ds) != plan.versions[ds]][:MAX_REQUESTS_PER_TICK]
    runs = [dg.RunRequest(partition_key=ds, asset_selection=per_dataset,
                          tags={"medbench/reason": "new" if ds in plan.added else "changed"}) for ds in todo]
    if plan.removed:
        remove_datasets(instance, config, plan.removed, delete_partitions=False)
        runs.append(dg.RunRequest(asset_selection=global_keys,
                                  tags={"medbench/reason": "removed", "medbench/removed": ",".join(plan.removed)}))
    return plan, todo, runs


def registry_sensor_factory(per_dataset: list[dg.AssetKey], global_keys: list[dg.AssetKey],
                            target) -> dg.SensorDefinition:
    @dg.sensor(target=target, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.STOPPED,
               description="Adds a partition per registry entry, runs the per-dataset assets of datasets whose "
                           "content, entry, label map, settings or code changed, and deletes removed datasets "
                           "(partition and outputs) then rebuilds the cross-dataset assets.")
    def source_registry_sensor(context: dg.SensorEvaluationContext):
        requested = json.loads(context.cursor or "{}")
        try:
            plan, todo, runs = _requests(context.instance, per_dataset, global_keys, requested)
        except RegistryError as exc:
            return dg.SkipReason(str(exc))  # keep the cursor: a broken registry changes nothing
        if not runs:
            return dg.SkipReason(f"{len(plan.fresh)} dataset(s) up to date; nothing changed")
        partition_requests = []
        if plan.added:
            partition_requests.append(datasets_partitions.build_add_request(plan.added))
        if plan.removed:
            partition_requests.append(datasets_partitions.build_delete_request(plan.removed))
        cursor = {k: v for k, v in {**requested, **{ds: plan.versions[ds] for ds in todo}}.items()
                  if k in plan.versions}
        return dg.SensorResult(dynamic_partitions_requests=partition_requests, run_requests=runs,
                               cursor=json.dumps(cursor, sort_keys=True))

    return source_registry_sensor


def registry_schedule_factory(per_dataset: list[dg.AssetKey], global_keys: list[dg.AssetKey], target,
                              cron: str, timezone: str) -> dg.ScheduleDefinition:
    @dg.schedule(cron_schedule=cron, execution_timezone=timezone, target=target,
                 default_status=dg.DefaultScheduleStatus.STOPPED, name="source_registry_schedule",
                 description="The registry sensor's detection on a cron (MEDBENCH_SCHEDULE_CRON, nightly by "
                             "default): re-runs changed datasets, deletes removed ones.")
    def source_registry_schedule(context: dg.ScheduleEvaluationContext):
        try:
            plan, _, runs = _requests(context.instance, per_dataset, global_keys, {})
        except RegistryError as exc:
            return dg.SkipReason(str(exc))
        if plan.added:  # schedules cannot return partition requests: apply them here
            context.instance.add_dynamic_partitions(datasets_partitions.name, plan.added)
        for ds in plan.removed:
            context.instance.delete_dynamic_partition(datasets_partitions.name, ds)
        return runs or dg.SkipReason(f"{len(plan.fresh)} dataset(s) up to date; nothing changed")

    return source_registry_schedule
