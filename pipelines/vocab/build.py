"""Build the label_vocab table: one row per (dataset, raw label) seen in the regions of that dataset."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass

import pyarrow as pa

from pipelines import PIPELINE_VERSION
from pipelines.label_maps import LabelMap
from pipelines.modalities import GMAI_MODALITY
from pipelines.records import LABEL_VOCAB, to_table
from pipelines.taxonomy import KIND_GRANULARITIES
from pipelines.vocab.curated import Curated
from pipelines.vocab.mesh import MeshVocab
from pipelines.vocab.normalize import Normalizer, Pin
from pipelines.vocab.tagging import Hints, Suggest, Tagger


class VocabError(ValueError):
    pass


@dataclass
class DatasetLabels:
    """What the vocabulary needs to know about one dataset."""

    dataset_id: str
    modality: str
    task_type: str
    label_map: LabelMap
    label_map_path: str
    kinds: dict[str, Counter]  # raw label -> Counter of region kinds (image/box/mask)


# Names that say nothing clinical: a colour, a number, "segment 3", "background", "other", the body outline.
# Such a label must be mapped to a structure or excluded in its label map before it can reach an item.
_COLOURS = r"(?:light |dark |pale )?(?:red|green|blue|yellow|orange|purple|pink|cyan|magenta|brown|black|white|grey|gray|violet)"
MEANINGLESS = re.compile(rf"^(?:{_COLOURS}(?: segment| label| region| structure)?|(?:segment|label|region|structure|roi|object)"
                         rf"(?: ?\d+)?|\d+|background|other|others|unknown|misc|body|external|body outline|skin outline)$")


def meaningless(raw: str, canonical: str) -> str | None:
    """The name (raw or canonical) that carries no clinical meaning, or None."""
    for name in (canonical, raw):
        key = " ".join(str(name).lower().replace("_", " ").replace("-", " ").split())
        if key and MEANINGLESS.match(key):
            return str(name)
    return None


def pin_problems(ds: DatasetLabels, mesh: MeshVocab) -> list[str]:
    """Label-map MeSH pins that do not exist or do not carry their stated name."""
    out = []
    for label, spec in ds.label_map.labels.items():
        if spec and spec.mesh_id and (err := mesh.check_id(spec.mesh_id, spec.mesh_name)):
            out.append(f"{ds.label_map_path}, label {label!r}: {err}")
    return out


def build_vocab(datasets: list[DatasetLabels], mesh: MeshVocab, curated: Curated, seed: int,
                suggest: Suggest | None = None, suggest_origin: str = "llm") -> pa.Table:
    problems = curated.problems(mesh) + [p for ds in datasets for p in pin_problems(ds, mesh)]
    if problems:
        raise VocabError("curated MeSH mappings fail validation:\n  " + "\n  ".join(problems)
                         + "\nfix the id or the name (look it up in MeSH " + mesh.version + ")")
    normalizer = Normalizer(mesh, curated)
    tagger = Tagger(curated.tagging, suggest, suggest_origin)
    rows = []
    for ds in sorted(datasets, key=lambda d: d.dataset_id):
        lm = ds.label_map
        defaults = Hints(lm.semantic_type, lm.task, lm.department)
        for raw in sorted(ds.kinds):
            spec = lm.spec(raw)
            pin = Pin(spec.canonical, spec.mesh_id, spec.mesh_name, spec.no_mesh, spec.accept, spec.semantic_type)
            res = normalizer.resolve(raw, lm.context, pin)
            tags = tagger.tag(res, ds.modality, Hints(spec.semantic_type, spec.task, spec.department), defaults)
            status, reason = res.status, res.reason
            if spec.exclude:
                status, reason = "excluded", f"excluded by label map: {spec.exclude}"
            elif spec.visible_on and ds.modality not in spec.visible_on:
                status, reason = "excluded", (f"not visible on {ds.modality} (label map: visible on "
                                              f"{', '.join(spec.visible_on)})")
            elif status != "unresolved" and (word := meaningless(raw, res.canonical_label)):
                status, reason = "unresolved", (f"label without clinical meaning ({word!r}): map it to a structure "
                                                "with `canonical`, or `exclude: <reason>` in the label map")
            grans = sorted({g for kind in ds.kinds[raw] for g in KIND_GRANULARITIES.get(kind, ())})
            desc = mesh.get(res.mesh_id) if res.mesh_id else None
            rows.append({
                "raw_label": raw, "canonical_label": res.canonical_label, "status": status,
                "mesh_id": res.mesh_id, "mesh_name": desc.name if desc else None,
                "tree_numbers": list(res.tree_numbers), "reason": reason, "rules_fired": res.rules,
                "laterality": res.side, "semantic_type": tags.semantic_type, "task": tags.task,
                "department": tags.department, "modality": ds.modality,
                "gmai_modality": GMAI_MODALITY.get(ds.modality, ds.modality), "task_type": ds.task_type,
                "granularities": grans, "regions": int(sum(ds.kinds[raw].values())),
                "tag_origin": json.dumps(tags.origin, sort_keys=True), "tag_issues": tags.issues,
                "contains": sorted(spec.contains),
                "dataset_id": ds.dataset_id, "source_path": ds.label_map_path,
                "pipeline_version": PIPELINE_VERSION, "seed": seed,
            })
    return to_table(rows, LABEL_VOCAB)


def kinds_by_label(regions: pa.Table) -> dict[str, Counter]:
    """Raw label -> region kinds, from a regions table (multi-label images count each label)."""
    out: dict[str, Counter] = defaultdict(Counter)
    for kind, raw, labels in zip(regions.column("kind").to_pylist(), regions.column("raw_label").to_pylist(),
                                 regions.column("labels").to_pylist()):
        for label in (labels or ([raw] if raw else [])):
            out[label][kind] += 1
    return dict(out)


def unresolved_names(vocab) -> list[str]:
    """'dataset: raw label (why)' for every unresolved row of a label_vocab frame, sorted."""
    rows = vocab[vocab["status"] == "unresolved"]
    return sorted(f"{r.dataset_id}: {r.raw_label}" + (f" ({r.reason})" if isinstance(r.reason, str) and r.reason else "")
                  for r in rows.itertuples())
