"""Map one raw label to a canonical label by explicit rules; every rule that fires is recorded.

Order: label-map pin → form (case/punctuation) → spelling → laterality → abbreviation →
context synonym → curated concept / MeSH entry term (→ synonym) → inflection → fuzzy spelling.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from rapidfuzz import fuzz, process

from pipelines.vocab.curated import Concept, Curated
from pipelines.vocab.mesh import MeshVocab
from pipelines.vocab.text import (
    display_name,
    form_key,
    inflections,
    singulars,
    split_side,
)

FUZZY_CUTOFF = 92.0
FUZZY_MIN_LENGTH = 6
# short abbreviations that are also English words: expanded only when written in capitals
_WORDLIKE = {"all", "la", "ra", "ms", "tb", "df", "nv", "mel", "lv", "rv"}


@dataclass(frozen=True)
class Pin:
    """What a label map fixes for one raw label (see pipelines.label_maps.LabelSpec)."""

    canonical: str | None = None
    mesh_id: str | None = None
    mesh_name: str | None = None
    no_mesh: str | None = None
    accept: str | None = None
    semantic_type: str | None = None


@dataclass
class Resolution:
    raw_label: str
    canonical_label: str
    mesh_id: str | None = None
    tree_numbers: tuple[str, ...] = ()
    reason: str | None = None  # why there is no MeSH id (curated), or why it is unresolved
    status: str = "unresolved"  # mesh | no_mesh | accepted | unresolved
    rules: list[str] = field(default_factory=list)
    side: str | None = None
    semantic_type: str | None = None

    def fire(self, rule: str) -> None:
        if rule not in self.rules:
            self.rules.append(rule)


class Normalizer:
    def __init__(self, mesh: MeshVocab, curated: Curated):
        self.mesh = mesh
        self.curated = curated
        self.concepts: dict[str, Concept] = {}
        by_id: dict[str, list[Concept]] = {}
        for c in curated.concepts:
            for name in [c.label, *c.synonyms]:
                self.concepts.setdefault(form_key(name), c)
            if c.mesh_id:
                by_id.setdefault(c.mesh_id, []).append(c)
        # a descriptor's readable name comes from its concept when exactly one concept claims it
        self.concept_of_id = {ui: cs[0] for ui, cs in by_id.items() if len(cs) == 1}
        self.abbreviations = {form_key(k): v for k, v in curated.abbreviations.items()}
        self.spelling = {form_key(k): form_key(v) for k, v in curated.spelling.items()}
        self.patterns = [(re.compile(p.match), p.replace) for p in curated.patterns]
        self.context = {ctx: {form_key(k): v for k, v in m.items()} for ctx, m in curated.context_synonyms.items()}
        self._mesh_keys = {form_key(t): ids for t, ids in mesh.terms.items()}
        self._fuzzy_choices = sorted(set(self.concepts) | set(self._mesh_keys))

    # -- public -------------------------------------------------------------------------------
    def resolve(self, raw: str, context: str | None = None, pin: Pin | None = None) -> Resolution:
        pin = pin or Pin()
        res = Resolution(raw_label=raw, canonical_label=form_key(raw), semantic_type=pin.semantic_type)
        if pin.canonical and (pin.mesh_id or pin.no_mesh):
            return self._raw_side(self._pinned(res, pin))
        text = pin.canonical or raw
        if pin.canonical:
            res.fire("label_map")
        form = self._surface(text, res)
        form = self._context(form, context, res)
        self._lookup(form, res)
        if not res.rules and res.canonical_label != raw:  # e.g. 'high grade dysplasia' -> 'high-grade dysplasia'
            res.fire("form")
        if res.status == "unresolved" and pin.accept:
            res.status, res.reason = "accepted", f"accepted by label map: {pin.accept}"
        return self._raw_side(res)

    # -- steps --------------------------------------------------------------------------------
    @staticmethod
    def _raw_side(res: Resolution) -> Resolution:
        """The side written in the raw label ('hip_left') when a pinned canonical form dropped it: the
        vocabulary keeps it, so two sides of one structure stay two structures wherever they are named."""
        if res.side is None:
            words = form_key(res.raw_label).split()
            while len(words) > 1 and words[-1].isdigit():  # 'rib left 10'
                words = words[:-1]
            _, side = split_side(words)
            if side:
                res.side = side
                res.fire("laterality")
        return res

    def _pinned(self, res: Resolution, pin: Pin) -> Resolution:
        res.fire("label_map")
        res.canonical_label = pin.canonical
        if pin.mesh_id:
            desc = self.mesh.get(pin.mesh_id)
            res.mesh_id, res.tree_numbers, res.status = pin.mesh_id, desc.tree_numbers if desc else (), "mesh"
        else:
            res.status, res.reason = "no_mesh", pin.no_mesh
        return res

    def _surface(self, text: str, res: Resolution) -> str:
        """Form, spelling, laterality and abbreviation rules on the words of the label."""
        form = form_key(text)
        if form != " ".join(text.lower().split()):
            res.fire("form")
        caps = {form_key(t) for t in re.split(r"[^0-9A-Za-z]+", text) if len(t) >= 2 and t.isupper()}
        words = form.split()
        spelled = [self.spelling.get(w, w) for w in words]
        if spelled != words:
            res.fire("spelling")
        known = " ".join(spelled) in self.concepts or " ".join(spelled) in self._mesh_keys
        if len(spelled) > 1 and spelled[-1].isdigit() and not known:  # 'rib left 10': the 10th of a numbered series
            spelled = spelled[:-1]
            res.fire("numbering")
        words, side = split_side(spelled)
        if side:
            res.side = side
            res.fire("laterality")
        joined = " ".join(words)
        for pattern, replacement in self.patterns:
            if pattern.match(joined):
                joined = form_key(pattern.sub(replacement, joined))
                words = joined.split()
                res.fire("numbering")
                break
        if joined in self.abbreviations and (joined not in _WORDLIKE or joined in caps):
            res.fire("abbreviation")
            return form_key(self.abbreviations[joined])
        expanded = [form_key(self.abbreviations[w]) if w in caps and w in self.abbreviations else w for w in words]
        if expanded != words:
            res.fire("abbreviation")
            return " ".join(expanded)
        if joined in caps and len(ids := self.mesh.expand_abbreviation(joined)) == 1:
            res.fire("abbreviation")
            return form_key(self.mesh.get(next(iter(ids))).name)
        return joined

    def _context(self, form: str, context: str | None, res: Resolution) -> str:
        target = self.context.get(context or "", {}).get(form)
        if target:
            res.fire("context_synonym")
            return form_key(target)
        return form

    def _lookup(self, form: str, res: Resolution) -> None:
        for candidate, rule in [(form, None), *((v, "spelling") for v in inflections(form))]:
            if self._match(candidate, form, res):
                if rule:
                    res.fire(rule)
                return
        if len(form) >= FUZZY_MIN_LENGTH:
            hit = process.extractOne(form, self._fuzzy_choices, scorer=fuzz.ratio, score_cutoff=FUZZY_CUTOFF)
            if hit and self._match(hit[0], form, res):
                res.fire("spelling")
                return
        res.canonical_label = form
        res.reason = f"no curated concept or MeSH {self.mesh.version} entry term matches {form!r}"

    def _match(self, key: str, form: str, res: Resolution) -> bool:
        concept = self.concepts.get(key)
        if concept is not None:
            self._apply_concept(concept, form, res)
            return True
        ids = self._mesh_keys.get(key, set())
        if len(ids) > 1:
            res.canonical_label = form
            res.reason = f"{form!r} is an entry term of several descriptors: {', '.join(sorted(ids))}"
            return True
        if not ids:
            return False
        desc = self.mesh.get(next(iter(ids)))
        concept = self.concept_of_id.get(desc.ui)
        if concept is not None:
            self._apply_concept(concept, form, res)
            return True
        res.mesh_id, res.tree_numbers, res.status = desc.ui, desc.tree_numbers, "mesh"
        res.canonical_label = self._readable(desc)
        if form_key(res.canonical_label) != form:
            res.fire("synonym")
        return True

    def _readable(self, desc) -> str:
        """The descriptor's name de-inverted, singular when MeSH lists the singular for it too."""
        name = display_name(desc.name)
        for variant in singulars(form_key(name)):
            if variant.count(" ") == name.count(" ") and self._mesh_keys.get(variant) == {desc.ui}:
                return " ".join(name.split()[:-1] + [variant.split()[-1]])
        return name

    def _apply_concept(self, concept: Concept, form: str, res: Resolution) -> None:
        res.canonical_label = concept.label
        res.semantic_type = res.semantic_type or concept.semantic_type
        if form_key(concept.label) != form:
            res.fire("synonym")
        if concept.mesh_id:
            desc = self.mesh.get(concept.mesh_id)
            trees = (desc.tree_numbers if desc else ()) or tuple(concept.tree_numbers)
            res.mesh_id, res.tree_numbers, res.status = concept.mesh_id, trees, "mesh"
        else:
            res.status, res.reason = "no_mesh", concept.no_mesh
