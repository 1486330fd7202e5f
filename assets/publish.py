"""hub_push: publish the benchmark export to the Hugging Face Hub (opt-in: skipped unless publish.repo_id is set)."""

import dagster as dg

from assets.export import benchmark_exports
from assets.resources import MedbenchResource


@dg.asset(group_name="publish", deps=[benchmark_exports], output_required=False,
          description="One commit of the public export files to a Hub dataset repo (never the answer key); "
                      "unchanged files are skipped. Set publish.repo_id in the config to enable.")
def hub_push(context: dg.AssetExecutionContext, medbench: MedbenchResource):
    from pipelines.publish import Publisher  # the Hub client and HF datasets: loaded by the runs that publish
    settings = medbench.config.publish
    if not settings.repo_id:
        context.log.info("hub_push skipped: publish.repo_id is not set (set it in the config YAML, "
                         "or run `medbench push --repo-id ORG/NAME`)")
        return
    publisher = Publisher(settings, log=context.log.info)
    report = publisher.push(medbench.layout.root / "benchmark", settings.repo_id)
    yield dg.MaterializeResult(metadata={
        "repo_id": settings.repo_id, "revision": report.revision, "commit": report.commit_oid or "none (unchanged)",
        "commit_message": report.commit_message, "uploaded": len(report.uploaded),
        "unchanged": len(report.unchanged), "deleted": len(report.deleted), "configs": ", ".join(sorted(report.configs)),
        "url": dg.MetadataValue.url(f"{publisher.endpoint}/datasets/{settings.repo_id}")})
