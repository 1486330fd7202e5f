"""The curated fallback vocabulary (mesh_vocab/fallback_options.yaml): distractors for small pools.

A dataset with one label per modality and task (Kvasir polyps, ISBI membranes, pyradiomics tumours)
has no certainly-wrong option of its own. Options of another modality are no answer (answerable from
the modality alone), so each group here lists plausible other findings or structures for one
modality, task and body region, each with a MeSH descriptor checked against the shipped tables. The
MeSH tree numbers also feed :class:`pipelines.vocab.hierarchy.Hierarchy`, so the synonym / ancestor /
descendant rule applies to fallback options like any other.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipelines.vocab.mesh import DEFAULT_MESH_DIR, MeshVocab, load_mesh

FALLBACK_PATH = DEFAULT_MESH_DIR / "fallback_options.yaml"
REGION_GRANULARITIES = ["mask", "box"]


class FallbackError(ValueError):
    pass


class Option(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str
    mesh_id: str
    mesh_name: str


class Group(BaseModel):
    """Options for one (modality, task, body region); ``answers`` limits which keys they serve."""

    model_config = ConfigDict(extra="forbid")
    modality: str
    task: str
    region: str
    answers: list[str] = []
    granularities: list[str] = Field(default_factory=lambda: list(REGION_GRANULARITIES))
    options: list[Option]

    def serves(self, modality: str, task: str, granularity: str, answers: list[str]) -> bool:
        return (self.modality == modality and self.task == task and granularity in self.granularities
                and (not self.answers or set(answers) <= set(self.answers)))


class Fallback(BaseModel):
    model_config = ConfigDict(extra="forbid")
    groups: list[Group]

    def options_for(self, modality: str, task: str, granularity: str, answers: list[str]) -> list[str]:
        """Fallback labels for a question (sorted, unique; empty when no group serves it)."""
        return sorted({o.label for g in self.groups if g.serves(modality, task, granularity, answers)
                       for o in g.options})

    def problems(self, mesh: MeshVocab, path: Path = FALLBACK_PATH) -> list[str]:
        """Every option's MeSH id must exist and carry its stated name (or have it as an entry term)."""
        return [f"{path}, {g.modality} / {g.task}, option {o.label!r}: {err}"
                for g in self.groups for o in g.options if (err := mesh.check_id(o.mesh_id, o.mesh_name))]

    def nodes(self, mesh: MeshVocab) -> dict[str, tuple[str, tuple[str, ...]]]:
        """label -> (MeSH id, tree numbers), for the hierarchy."""
        out = {}
        for g in self.groups:
            for o in g.options:
                d = mesh.get(o.mesh_id)
                out[o.label] = (o.mesh_id, d.tree_numbers if d else ())
        return out

    def modalities(self) -> dict[str, set[str]]:
        """label -> modalities it is a fallback for (so the cross-modality audit accepts it there)."""
        out: dict[str, set[str]] = {}
        for g in self.groups:
            for o in g.options:
                out.setdefault(o.label, set()).add(g.modality)
        return out


@lru_cache(maxsize=4)
def load_fallback(path: Path = FALLBACK_PATH) -> Fallback:
    if not path.exists():
        return Fallback(groups=[])
    try:
        return Fallback.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")) or {"groups": []})
    except (yaml.YAMLError, ValidationError) as exc:
        raise FallbackError(f"{path}: {exc}\nfix the file (see its header for the expected keys)") from None


@lru_cache(maxsize=4)
def fallback_nodes(path: Path = FALLBACK_PATH) -> dict[str, tuple[str, tuple[str, ...]]]:
    return load_fallback(path).nodes(load_mesh())
