"""The curated files of mesh_vocab/ (abbreviations, concepts, spelling, tagging rules), typed."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pipelines.vocab.mesh import DEFAULT_MESH_DIR, MeshVocab


class CuratedError(ValueError):
    pass


class Concept(BaseModel):
    """One readable label for a descriptor (or a label MeSH lacks, with ``no_mesh`` saying why)."""

    model_config = ConfigDict(extra="forbid")
    label: str
    mesh_id: str | None = None
    mesh_name: str | None = None
    no_mesh: str | None = None
    note: str | None = None
    semantic_type: str | None = None
    tree_numbers: list[str] = Field([], description="for descriptors whose only tree number is a top-level one "
                                    "(e.g. Neoplasms = C04), which the tree table omits")
    synonyms: list[str] = []

    @model_validator(mode="after")
    def _id_or_reason(self) -> "Concept":
        if bool(self.mesh_id) == bool(self.no_mesh):
            raise ValueError(f"concept {self.label!r}: give exactly one of mesh_id (with mesh_name) or no_mesh")
        if self.mesh_id and not self.mesh_name:
            raise ValueError(f"concept {self.label!r}: mesh_id needs mesh_name so the mapping can be checked")
        return self


class Pattern(BaseModel):
    """A whole-label regular expression (on the form key) and its replacement."""

    model_config = ConfigDict(extra="forbid")
    match: str
    replace: str


class TaggingRules(BaseModel):
    model_config = ConfigDict(extra="forbid")
    semantic_types: dict[str, str]
    organ_tasks: dict[str, str]
    type_tasks: dict[str, str]
    departments: dict[str, str]
    low_priority_departments: list[str] = []
    modality_departments: dict[str, str] = {}


class Curated(BaseModel):
    model_config = ConfigDict(extra="forbid")
    abbreviations: dict[str, str]
    concepts: list[Concept]
    context_synonyms: dict[str, dict[str, str]]
    spelling: dict[str, str]
    patterns: list[Pattern] = []
    tagging: TaggingRules

    def problems(self, mesh: MeshVocab) -> list[str]:
        """Every curated MeSH id must exist and carry its stated name (or that name as an entry term)."""
        out = []
        for c in self.concepts:
            if c.mesh_id and (err := mesh.check_id(c.mesh_id, c.mesh_name)):
                out.append(f"mesh_vocab/concepts.yaml, concept {c.label!r}: {err}")
        return out


def _read(path: Path) -> dict:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise CuratedError(f"{path}: cannot read ({exc})") from exc


@lru_cache(maxsize=4)
def load_curated(folder: str | Path | None = None) -> Curated:
    folder = Path(folder) if folder else DEFAULT_MESH_DIR
    concepts = _read(folder / "concepts.yaml")
    try:
        return Curated(
            abbreviations=_read(folder / "abbreviations.yaml").get("abbreviations", {}),
            concepts=concepts.get("concepts", []),
            context_synonyms=concepts.get("context_synonyms", {}),
            spelling=_read(folder / "spelling.yaml").get("words", {}),
            patterns=_read(folder / "spelling.yaml").get("patterns", []),
            tagging=_read(folder / "tagging.yaml"),
        )
    except ValidationError as exc:
        raise CuratedError(f"{folder}: curated vocabulary files are invalid: {exc}") from exc
