"""Dagster resources: the shared PipelineConfig and the source registry, loaded once per run."""


from functools import cached_property

import dagster as dg

from pipelines.config import PipelineConfig
from pipelines.run_state import usable
from pipelines.source import Registry
from pipelines.sources.registry import registry_of
from pipelines.storage import DataLayout


class MedbenchResource(dg.ConfigurableResource):
    """Wraps :class:`PipelineConfig`; empty fields fall back to MEDBENCH_* env vars and defaults."""

    config_file: str = ""
    registry: str = ""
    data_root: str = ""
    seed: int | None = None

    @cached_property
    def config(self) -> PipelineConfig:
        return PipelineConfig.load(self.config_file or None, registry=self.registry or None,
                                   data_root=self.data_root or None, seed=self.seed)

    @cached_property
    def sources(self) -> Registry:
        return registry_of(self.config)

    @property
    def dataset_ids(self) -> list[str]:
        """Registered datasets minus those whose last build failed (their tables may be stale)."""
        return usable(self.sources.ids, self.config.data_root)

    @property
    def layout(self) -> DataLayout:
        return DataLayout(self.config.data_root)


class LLMResource(dg.ConfigurableResource):
    """The OpenAI-compatible client (our own: dagster-openai has no base URL). Empty fields use config.llm."""

    base_url: str = ""
    model: str = ""
    api_key: str = ""

    def client(self, config: PipelineConfig):
        from pipelines.llm import LLMClient
        settings = config.llm.model_copy(update={k: v for k, v in (("base_url", self.base_url),
                                                                   ("model", self.model)) if v})
        return LLMClient(settings, api_key=self.api_key or None)
