"""Which dataset partitions are new, changed, unchanged or removed, judged against the data root.

The registry sensor, the nightly schedule and `medbench build` all ask this module, so they agree.
A partition is up to date when the data root's own state (pipelines.run_state) says its per-dataset
outputs exist and were built from the current run version (content fingerprint + settings + code).
The Dagster instance is not asked: one Dagster home may serve several data roots, and an empty data
root must never count as built. Nothing here reads a sensor cursor either: a first tick on an
already-built data root therefore starts from what is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import dagster as dg

from assets.partitions import datasets_partitions
from pipelines.cleanup import remove_dataset_outputs
from pipelines.config import PipelineConfig
from pipelines.run_state import built_version, globals_current
from pipelines.source import Registry
from pipelines.sourcefiles import FileProblem
from pipelines.sources.fingerprint import (
    HashCache,
    code_version,
    hash_cache_path,
    registry_fingerprints,
    run_version,
)


@lru_cache(maxsize=1)
def current_code_version() -> str:
    return code_version()


def dataset_run_versions(registry: Registry, config: PipelineConfig, only: list[str] | None = None,
                         problems: dict[str, list[FileProblem]] | None = None) -> dict[str, str]:
    """Run version per registered dataset (content hashes cached under the data root; ``changes.verify``
    re-hashes every file). Files that cannot be read land in ``problems``, never in an exception."""
    cache = HashCache.load(hash_cache_path(config.data_root), verify=config.changes.verify,
                           limits=config.ingest.limits)
    fps = registry_fingerprints(registry, cache, only, problems)
    cfg, code = config.fingerprint(), current_code_version()
    return {ds: run_version(fp, cfg, code) for ds, fp in fps.items()}


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
        up_to_date = not force and built_version(config.data_root, ds) == versions[ds]
        (plan.fresh if up_to_date else plan.stale).append(ds)
    return plan


def globals_up_to_date(config: PipelineConfig, versions: dict[str, str]) -> bool:
    """The cross-dataset outputs under the data root exist and were built from exactly these dataset versions."""
    return globals_current(config.data_root, versions)


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
