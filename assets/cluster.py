"""Jobs that run per-dataset steps on a cluster engine (only when its integration is installed).

`dataset_job_celery` hands each step of a partition run to Celery workers (`uv sync --extra
celery`; run config and worker setup in deploy/celery.yaml). Without dagster-celery the job is
simply absent, so the default install stays small.
"""

from __future__ import annotations

import dagster as dg


def cluster_jobs(per_dataset: list[dg.AssetsDefinition]) -> list:
    try:
        from dagster_celery import celery_executor
    except ImportError:
        return []
    return [dg.define_asset_job("dataset_job_celery", selection=dg.AssetSelection.assets(*per_dataset),
                                executor_def=celery_executor,
                                description="The per-dataset stages of one partition, each step on a Celery "
                                            "worker (see deploy/celery.yaml).")]
