"""The modules each asset's steps run in worker processes. A run names them before its first step, so its worker
server (pipelines.processes) loads them in the background while the run's first steps go on, and each worker
forks with them loaded instead of importing them."""

from __future__ import annotations

WORKER_MODULES: dict[str, tuple[str, ...]] = {
    "raw_samples": ("pipelines.sources.volumes", "pipelines.standardize.run"),  # the partition's two steps
    "rendered_items": ("pipelines.render.items",),
    # the TSVs beside the Parquet, the payload hashing, then the checks (scikit-learn)
    "benchmark_exports": ("pipelines.export.tsv_files", "pipelines.export.verify", "pipelines.validity.exported"),
}


def worker_modules(keys: list[str]) -> list[str]:
    """The worker modules of the assets named ``keys``, each once."""
    return list(dict.fromkeys(m for k in keys for m in WORKER_MODULES.get(k, ())))
