"""Relations between canonical labels from MeSH tree numbers (used to forbid 'also correct' distractors)."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Literal

import pandas as pd

from pipelines.vocab.text import form_key

Relation = Literal["same", "synonym", "ancestor", "descendant", "unrelated"]


@dataclass(frozen=True)
class Node:
    label: str
    mesh_id: str | None
    tree_numbers: tuple[str, ...]


def _is_under(child: str, parent: str) -> bool:
    return child.startswith(parent + ".")


def relation_of(a: Node, b: Node) -> Relation:
    """How ``a`` relates to ``b``: 'ancestor' means a is broader than b (Neoplasms vs Liver Neoplasms)."""
    if a.label == b.label:
        return "same"
    if form_key(a.label) == form_key(b.label) or (a.mesh_id and a.mesh_id == b.mesh_id):
        return "synonym"
    if any(_is_under(tb, ta) for ta in a.tree_numbers for tb in b.tree_numbers):
        return "ancestor"
    if any(_is_under(ta, tb) for ta in a.tree_numbers for tb in b.tree_numbers):
        return "descendant"
    return "unrelated"


class Hierarchy:
    """Canonical label -> MeSH node, built from the label_vocab table."""

    def __init__(self, nodes: dict[str, Node], nested: set[frozenset[str]] | None = None):
        self.nodes = nodes
        self.nested = nested or set()  # {container, contained} canonical label pairs declared in label maps

    @classmethod
    def from_vocab(cls, vocab: pd.DataFrame) -> "Hierarchy":
        """Every canonical label of the vocabulary, plus the curated fallback options (docs/candidates.md 'Small
        pools') under their MeSH tree numbers, so the same rule judges both; and the nesting label maps declare
        (`contains`)."""
        from pipelines.vocab.fallback import fallback_nodes
        nodes: dict[str, Node] = {label: Node(label, ui, trees) for label, (ui, trees) in fallback_nodes().items()}
        for row in vocab.drop_duplicates("canonical_label").itertuples(index=False):
            nodes[row.canonical_label] = Node(row.canonical_label, row.mesh_id or None,
                                              tuple(row.tree_numbers if row.tree_numbers is not None else ()))
        nested: set[frozenset[str]] = set()
        if "contains" in vocab:
            canon = dict(zip(zip(vocab["dataset_id"], vocab["raw_label"]), vocab["canonical_label"]))
            for ds, label, inner in zip(vocab["dataset_id"], vocab["canonical_label"], vocab["contains"]):
                for raw in (inner if inner is not None else ()):
                    if (ds, raw) in canon and canon[(ds, raw)] != label:
                        nested.add(frozenset((label, canon[(ds, raw)])))
        return cls(nodes, nested)

    def node(self, label: str) -> Node:
        return self.nodes.get(label) or Node(label, None, ())

    def relation(self, a: str, b: str) -> Relation:
        return relation_of(self.node(a), self.node(b))

    def compatible_distractor(self, answer: str, option: str) -> bool:
        """False when ``option`` would also be a correct answer (synonym, ancestor or descendant, or a region the
        label map nests inside the answer's or around it: the outline of a whole tumour also encloses its core)."""
        return frozenset((answer, option)) not in self.nested and self.relation(answer, option) == "unrelated"


def related_pairs(vocab) -> list[tuple[str, str, str, str]]:
    """(dataset, label a, label b, relation) for canonical labels of one dataset that overlap in meaning."""
    hierarchy = Hierarchy.from_vocab(vocab)
    out = []
    for ds, group in vocab.groupby("dataset_id"):
        labels = sorted(set(group["canonical_label"]))
        for a, b in combinations(labels, 2):
            rel = hierarchy.relation(a, b)
            if rel != "unrelated":
                out.append((ds, a, b, rel))
    return out
