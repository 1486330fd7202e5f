"""Per-dataset label maps (label_maps/<dataset>.yaml): raw values and names a source may use.

A label map says which raw labels exist (and, for masks and arrays, which integer value
means which label). A label met in the data but absent here is quarantined, never guessed.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError


class LabelMapError(ValueError):
    pass


class LabelSpec(BaseModel):
    """Per-label hints for later stages."""

    model_config = ConfigDict(extra="forbid")
    ct_window: str | None = None


class LabelMap(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dataset: str | None = None
    values: dict[int, str] = {}
    labels: dict[str, LabelSpec | None] = {}
    ignore: list[str] = []

    def model_post_init(self, __context: object) -> None:
        for name in self.values.values():
            self.labels.setdefault(name, None)

    @property
    def names(self) -> set[str]:
        return set(self.labels)

    def spec(self, name: str) -> LabelSpec:
        return self.labels.get(name) or LabelSpec()

    def name_of(self, value: int) -> str | None:
        return self.values.get(int(value))


def load_label_map(path: Path) -> LabelMap:
    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        return LabelMap.model_validate(doc)
    except (yaml.YAMLError, ValidationError) as exc:
        raise LabelMapError(f"label map {path} is invalid: {exc}") from exc
