"""Which modules to load ahead of the steps that use them. Worker modules: a run names them before its first step,
so its worker server (pipelines.processes) loads them in the background while the run's first steps go on, and each
worker forks with them loaded instead of importing them; `medbench build` starts the servers itself, while it loads
its own modules (one for the dataset partitions, one for the cross-dataset runs), and its runs take their workers
from them. Step modules: see :data:`STEP_MODULES`."""

from __future__ import annotations

import importlib

WORKER_MODULES: dict[str, tuple[str, ...]] = {
    "raw_samples": ("pipelines.sources.volumes", "pipelines.standardize.run"),  # the partition's two steps
    "rendered_items": ("pipelines.render.items",),
    # the TSVs beside the Parquet, the payload hashing, then the checks (scikit-learn)
    "benchmark_exports": ("pipelines.export.tsv_files", "pipelines.export.verify", "pipelines.validity.exported"),
}


# Modules the cross-dataset steps import only when they run (scikit-learn for selection's blind readers and the
# export's checks, HF datasets for the Parquet features and the card: 1-2 s in all), so that loading the asset
# definitions does not. `medbench build` loads them while the dataset partitions run, and its later runs, forked
# from it, start with them.
STEP_MODULES: dict[str, tuple[str, ...]] = {
    "benchmark": ("pipelines.select.build", "pipelines.validity.audit"),
    "benchmark_exports": ("pipelines.export.run", "pipelines.export.verify", "pipelines.validity.exported"),  # + checks
}


def worker_modules(keys: list[str]) -> list[str]:
    """The worker modules of the assets named ``keys``, each once."""
    return list(dict.fromkeys(m for k in keys for m in WORKER_MODULES.get(k, ())))


def load_step_modules(keys: list[str]) -> None:
    """Import the :data:`STEP_MODULES` of the steps named ``keys``."""
    for module in dict.fromkeys(m for k in keys for m in STEP_MODULES.get(k, ())):
        importlib.import_module(module)
