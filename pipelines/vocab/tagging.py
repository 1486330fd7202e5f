"""Tag a canonical label with semantic type, clinical VQA task and department.

Precedence for each tag: label-map pin, curated concept, MeSH tree rule (mesh_vocab/tagging.yaml),
dataset default from the label map, modality default (department only), LLM suggestion. When
none decides, or rules disagree and nothing breaks the tie, the tag stays empty and the issue
is recorded, so the asset check reports it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pipelines.taxonomy import DEPARTMENTS, SEMANTIC_TYPES, TASKS
from pipelines.vocab.curated import TaggingRules
from pipelines.vocab.normalize import Resolution

# (label, field, allowed values, context) -> a value or None; wraps the LLM client
Suggest = Callable[[str, str, tuple[str, ...], dict], "str | None"]


@dataclass(frozen=True)
class Hints:
    """Values a label map pins for one label (or, for the dataset defaults, for all of them)."""

    semantic_type: str | None = None
    task: str | None = None
    department: str | None = None


@dataclass
class Tags:
    semantic_type: str | None = None
    task: str | None = None
    department: str | None = None
    origin: dict[str, str] = field(default_factory=dict)
    issues: list[str] = field(default_factory=list)


def _longest_prefix(tree_number: str, table: dict[str, str]) -> str | None:
    parts = tree_number.split(".")
    for n in range(len(parts), 0, -1):
        key = ".".join(parts[:n])
        if key in table:
            return table[key]
    return table.get(tree_number[0]) if tree_number else None


def _by_tree(trees: tuple[str, ...], table: dict[str, str]) -> list[str]:
    return sorted({v for t in trees if (v := _longest_prefix(t, table))})


class Tagger:
    def __init__(self, rules: TaggingRules, suggest: Suggest | None = None, suggest_origin: str = "llm"):
        self.rules = rules
        self.suggest = suggest
        self.suggest_origin = suggest_origin

    def tag(self, res: Resolution, modality: str, pin: Hints, dataset: Hints) -> Tags:
        tags = Tags()
        ctx = {"modality": modality, "mesh_id": res.mesh_id, "tree_numbers": list(res.tree_numbers)}
        tags.semantic_type = self._decide(tags, "semantic_type", res.canonical_label, [
            ("label_map", [pin.semantic_type] if pin.semantic_type else []),
            ("concept", [res.semantic_type] if res.semantic_type else []),
            ("mesh_tree", _by_tree(res.tree_numbers, self.rules.semantic_types)),
            ("dataset_default", [dataset.semantic_type] if dataset.semantic_type else []),
        ], SEMANTIC_TYPES, ctx)
        if tags.semantic_type == "organ":
            task_rule = _by_tree(res.tree_numbers, self.rules.organ_tasks)
        else:
            task_rule = [self.rules.type_tasks[tags.semantic_type]] if tags.semantic_type in self.rules.type_tasks else []
        tags.task = self._decide(tags, "task", res.canonical_label, [
            ("label_map", [pin.task] if pin.task else []),
            ("mesh_tree" if tags.semantic_type == "organ" else "semantic_type", task_rule),
            ("dataset_default", [dataset.task] if dataset.task else []),
        ], TASKS, ctx)
        dep_origin, dep_values = self._departments(res.tree_numbers, modality, dataset)
        tags.department = self._decide(tags, "department", res.canonical_label, [
            ("label_map", [pin.department] if pin.department else []),
            (dep_origin, dep_values),
            ("dataset_default", [dataset.department] if dataset.department else []),
            ("modality_default", [m] if (m := self.rules.modality_departments.get(modality)) else []),
        ], DEPARTMENTS, ctx)
        return tags

    def _departments(self, trees: tuple[str, ...], modality: str, dataset: Hints) -> tuple[str, list[str]]:
        found = _by_tree(trees, self.rules.departments)
        specific = [d for d in found if d not in self.rules.low_priority_departments]
        by_modality = self.rules.modality_departments.get(modality)
        if found and not specific and by_modality:  # only generic branches (C04 neoplasms): the modality's wins
            return "mesh_tree (generic branch; modality default)", [by_modality]
        found = specific or found
        if len(found) > 1:  # a tie: the dataset's or the modality's department breaks it when it is one of them
            for origin, hint in (("dataset", dataset.department), ("modality", by_modality)):
                if hint in found:
                    return f"mesh_tree (tie-break by {origin})", [hint]
        return "mesh_tree", found

    def _decide(self, tags: Tags, name: str, label: str, sources: list[tuple[str, list[str]]],
                allowed: tuple[str, ...], ctx: dict) -> str | None:
        tied: list[str] = []
        for origin, values in sources:
            bad = [v for v in values if v not in allowed]
            if bad:
                tags.issues.append(f"{name}: {origin} gives unknown value(s) {bad}")
                continue
            if tied:  # an earlier source disagreed with itself; a later one may only pick among its values
                values = [v for v in values if v in tied]
            if len(values) == 1:
                tags.origin[name] = f"{origin} (tie-break)" if tied else origin
                return values[0]
            if len(values) > 1 and not tied:
                tied = values
        if self.suggest is not None:
            value = self.suggest(label, name, tuple(tied) or allowed, ctx)
            if value in (tied or allowed):
                tags.origin[name] = self.suggest_origin
                return value
        if tied:
            tags.issues.append(f"{name}: rules disagree ({' | '.join(tied)}); pin it in the label map")
        elif not any(i.startswith(f"{name}:") for i in tags.issues):
            tags.issues.append(f"{name}: no rule decides; pin it in the label map")
        return None
