"""Which dataset partitions are new, changed, unchanged or removed, judged against what is materialized.

The registry sensor, the nightly schedule and `medbench build` all ask this module, so they agree.
A partition is up to date when the data version recorded by its latest `raw_samples`
materialization equals the current run version (content fingerprint + settings + code) and every
other per-dataset asset was materialized after it. Nothing here reads a sensor cursor: a first tick
on an already-built instance therefore starts from what is materialized.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import dagster as dg

from assets.partitions import datasets_partitions
from pipelines.cleanup import remove_dataset_outputs
from pipelines.config import PipelineConfig
from pipelines.fingerprint import HashCache, code_version, hash_cache_path, registry_fingerprints, run_version
from pipelines.registry import Registry

RAW = dg.AssetKey("raw_samples")
DATA_VERSION_TAG = "dagster/data_version"


@lru_cache(maxsize=1)
def current_code_version() -> str:
    return code_version()


def dataset_run_versions(registry: Registry, config: PipelineConfig, only: list[str] | None = None) -> dict[str, str]:
    """Run version per registered dataset (content hashes cached under the data root)."""
    cache = HashCache.load(hash_cache_path(config.data_root))
    fps = registry_fingerprints(registry, cache, only)
    cfg, code = config.fingerprint(), current_code_version()
    return {ds: run_version(fp, cfg, code) for ds, fp in fps.items()}


def _latest(instance: dg.DagsterInstance, key: dg.AssetKey, partition: str | None = None):
    flt = dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition] if partition else None)
    records = instance.fetch_materializations(flt, limit=1).records
    return records[0] if records else None


def materialized_version(instance: dg.DagsterInstance, dataset_id: str,
                         per_dataset_keys: list[dg.AssetKey]) -> str | None:
    """The run version the partition's outputs were built from, or None when they are incomplete."""
    raw = _latest(instance, RAW, dataset_id)
    if raw is None:
        return None
    for key in per_dataset_keys:
        rec = _latest(instance, key, dataset_id)
        if rec is None or rec.storage_id < raw.storage_id:
            return None
    mat = raw.asset_materialization
    return (mat.tags or {}).get(DATA_VERSION_TAG) if mat else None


@dataclass
class ChangePlan:
    versions: dict[str, str]
    added: list[str] = field(default_factory=list)     # in the registry, no partition yet
    stale: list[str] = field(default_factory=list)     # to (re)build: new, changed, incomplete or forced
    fresh: list[str] = field(default_factory=list)     # up to date
    removed: list[str] = field(default_factory=list)   # a partition without a registry entry

    @property
    def changed_anything(self) -> bool:
        return bool(self.stale or self.removed)


def plan_changes(instance: dg.DagsterInstance, registry: Registry, config: PipelineConfig,
                 per_dataset_keys: list[dg.AssetKey], only: list[str] | None = None,
                 force: bool = False) -> ChangePlan:
    versions = dataset_run_versions(registry, config)
    known = set(instance.get_dynamic_partitions(datasets_partitions.name))
    plan = ChangePlan(versions, added=[ds for ds in registry.ids if ds not in known],
                      removed=sorted(known - set(registry.ids)) if only is None else [])
    for ds in only or registry.ids:
        up_to_date = not force and materialized_version(instance, ds, per_dataset_keys) == versions[ds]
        (plan.fresh if up_to_date else plan.stale).append(ds)
    return plan


def globals_up_to_date(instance: dg.DagsterInstance, global_keys: list[dg.AssetKey],
                       per_dataset_keys: list[dg.AssetKey]) -> bool:
    """Every cross-dataset asset exists, was built by this code, and after the newest per-dataset output."""
    newest_input = max((r.storage_id for k in per_dataset_keys if (r := _latest(instance, k))), default=0)
    for key in global_keys:
        rec = _latest(instance, key)
        tags = (rec.asset_materialization.tags or {}) if rec and rec.asset_materialization else {}
        if rec is None or rec.storage_id < newest_input or tags.get("dagster/code_version") != current_code_version():
            return False
    return True


def remove_datasets(instance: dg.DagsterInstance, config: PipelineConfig, removed: list[str],
                    delete_partitions: bool = True) -> dict[str, int]:
    """Delete the outputs of datasets that left the registry (and, by default, their partitions)."""
    counts = {}
    for ds in removed:
        counts[ds] = len(remove_dataset_outputs(config.data_root, ds))
        if delete_partitions:
            instance.delete_dynamic_partition(datasets_partitions.name, ds)
    return counts


def sync_registry(instance: dg.DagsterInstance, registry: Registry, config: PipelineConfig,
                  per_dataset_keys: list[dg.AssetKey], only: list[str] | None = None, force: bool = False,
                  log=print) -> ChangePlan:
    """Plan, add partitions for new datasets, delete removed ones (partition and outputs)."""
    plan = plan_changes(instance, registry, config, per_dataset_keys, only, force)
    if plan.added:
        instance.add_dynamic_partitions(datasets_partitions.name, plan.added)
    for ds, n in remove_datasets(instance, config, plan.removed).items():
        log(f"dataset {ds} left the registry: partition deleted, {n} output path(s) removed")
    if plan.fresh:
        log(f"up to date, skipped: {', '.join(plan.fresh)} (--force re-runs)")
    return plan
