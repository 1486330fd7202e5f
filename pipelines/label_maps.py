"""Per-dataset label maps (label_maps/<dataset>.yaml): raw values and names a source may use.

A label map says which raw labels exist (and, for masks and arrays, which integer value
means which label). A label met in the data but absent here is quarantined, never guessed.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class LabelMapError(ValueError):
    pass


class LabelSpec(BaseModel):
    """Per-label hints for later stages; every vocabulary field pins what the rules would decide."""

    model_config = ConfigDict(extra="forbid")
    ct_window: str | None = None
    canonical: str | None = Field(None, description="canonical label to use instead of the rules' result")
    mesh_id: str | None = Field(None, description="MeSH descriptor id of `canonical` (checked against MeSH)")
    mesh_name: str | None = Field(None, description="the descriptor's name or entry term (checked)")
    no_mesh: str | None = Field(None, description="why `canonical` has no MeSH descriptor")
    accept: str | None = Field(None, description="accept this label unresolved, for this reason")
    semantic_type: str | None = None
    task: str | None = None
    department: str | None = None

    @model_validator(mode="after")
    def _pins(self) -> "LabelSpec":
        if (self.mesh_id or self.no_mesh) and not self.canonical:
            raise ValueError("mesh_id/no_mesh pin a canonical label: give `canonical` too")
        if self.mesh_id and not self.mesh_name:
            raise ValueError(f"mesh_id {self.mesh_id} needs mesh_name so the mapping can be checked")
        if self.mesh_id and self.no_mesh:
            raise ValueError("give mesh_id or no_mesh, not both")
        return self


class LabelMap(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dataset: str | None = None
    values: dict[int, str] = {}
    labels: dict[str, LabelSpec | None] = {}
    ignore: list[str] = []
    context: str | None = Field(None, description="body region for context synonyms: chest, abdomen, eye, ...")
    semantic_type: str | None = Field(None, description="default semantic type of this dataset's labels")
    task: str | None = Field(None, description="default clinical VQA task of this dataset's labels")
    department: str | None = Field(None, description="default department of this dataset's labels")

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
