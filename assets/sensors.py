"""Keep the dataset partitions in step with the registry and re-run datasets that changed."""


import json

import dagster as dg

from assets.partitions import datasets_partitions
from pipelines.config import PipelineConfig
from pipelines.fingerprint import registry_fingerprints
from pipelines.registry import RegistryError, load_registry

MAX_REQUESTS_PER_TICK = 50


def registry_sensor_factory(job) -> dg.SensorDefinition:
    @dg.sensor(job=job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.STOPPED,
               description="Adds a partition per registry entry and launches the per-dataset job when a "
                           "dataset's files, entry or label map change.")
    def source_registry_sensor(context: dg.SensorEvaluationContext):
        try:
            registry = load_registry(PipelineConfig.load().registry)
        except RegistryError as exc:
            return dg.SkipReason(str(exc))  # keep the cursor: a broken registry changes nothing
        seen = json.loads(context.cursor or "{}")
        now = registry_fingerprints(registry)
        changed = sorted(k for k, v in now.items() if seen.get(k) != v)[:MAX_REQUESTS_PER_TICK]
        if not changed:
            return dg.SkipReason("no dataset changed since the last tick")
        existing = set(context.instance.get_dynamic_partitions(datasets_partitions.name))
        return dg.SensorResult(
            dynamic_partitions_requests=[datasets_partitions.build_add_request(
                [k for k in changed if k not in existing])],
            run_requests=[dg.RunRequest(partition_key=k, run_key=f"{k}@{now[k]}") for k in changed],
            cursor=json.dumps({**seen, **{k: now[k] for k in changed}}, sort_keys=True),
        )

    return source_registry_sensor
