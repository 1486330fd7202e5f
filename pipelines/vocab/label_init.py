"""`medbench labels init`: a first label map for a new dataset, written from its data.

The dataset is scanned with a label map that accepts every label, so each raw label (and, for
masks and arrays, each integer value) the data holds is found. Each label is run through the
vocabulary normalizer: the suggestion (canonical label, MeSH id, rules) is written beside it as a
comment, and anything the rules cannot settle is marked TODO. Labels are left as `null` so the
build's own rules decide (a pin would drop what the rules add, such as laterality); an unnamed
integer value becomes `TODO_value_<n>`, which the build reports as unresolved until it is named.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pipelines.config import PipelineConfig
from pipelines.ingest import ingest
from pipelines.label_maps import LabelMap
from pipelines.source import (
    Problem,
    RegistryError,
    Source,
    SourceEntry,
    _resolve,
    _resolve_lexical,
)
from pipelines.sourcefiles import read_bytes
from pipelines.sources.registry import root_allowed
from pipelines.vocab.curated import load_curated
from pipelines.vocab.mesh import load_mesh
from pipelines.vocab.normalize import Normalizer
from pipelines.vocab.tagging import Hints, Tagger

TODO_VALUE = "TODO_value_{}"
NAMED_FORMATS = ("image_folder", "csv_manifest", "coco", "voc", "yolo", "rtstruct")


class _Everything(set):
    def __contains__(self, item: object) -> bool:
        return True


class OpenLabelMap(LabelMap):
    """A label map that names every value (known names first) and accepts every label: for discovery only."""

    @property
    def names(self) -> set[str]:
        return _Everything()

    def name_of(self, value: int) -> str | None:
        return self.values.get(int(value)) or TODO_VALUE.format(int(value))


@dataclass
class Found:
    """What the scan saw: label -> count, integer value -> label, and what was quarantined."""

    labels: Counter = field(default_factory=Counter)
    values: dict[int, str] = field(default_factory=dict)
    samples: int = 0
    quarantined: Counter = field(default_factory=Counter)


def known_names(root: Path, entry: SourceEntry, names_file: Path | None, pairs: dict[int, str]) -> dict[int, str]:
    """Value names the data ships with (MSD/nnU-Net dataset.json, a labels.json) or the user gives."""
    out: dict[int, str] = {}
    candidates = [names_file] if names_file else [root / str(entry.options.get("dataset_json", "dataset.json")),
                                                   root / "labels.json"]
    for path in candidates:
        if path and path.is_file():
            doc = yaml.safe_load(read_bytes(path, path.name).decode("utf-8-sig"))  # capped, timed, regular only
            labels = doc.get("labels", doc) if isinstance(doc, dict) else {}
            for k, v in labels.items():
                if str(k).lstrip("-").isdigit() and isinstance(v, str):
                    out[int(k)] = v
                elif str(v).lstrip("-").isdigit() and isinstance(k, str):  # nnU-Net v2: {"name": value}
                    out[int(v)] = k
            break
    out.pop(0, None)
    out.update(pairs)
    return out


def registry_entry(registry: Path, dataset_id: str) -> SourceEntry:
    doc = yaml.safe_load(Path(registry).read_text(encoding="utf-8-sig")) or {}
    entries = [d for d in doc.get("datasets", []) if isinstance(d, dict)]
    match = [d for d in entries if d.get("id") == dataset_id]
    if not match:
        raise RegistryError([Problem(Path(registry), dataset_id, "no such dataset id",
                                     f"add the entry first (see docs/registering_datasets.md); ids here: {[d.get('id') for d in entries]}")])
    return SourceEntry.model_validate(match[0])


def scan(registry: Path, dataset_id: str, config: PipelineConfig, names_file: Path | None = None,
         pairs: dict[int, str] | None = None) -> tuple[SourceEntry, Path, Found]:
    """Ingest the dataset with an open label map; returns the entry, the label-map path and what was found."""
    entry = registry_entry(registry, dataset_id)
    base = Path(registry).resolve().parent
    if not root_allowed(_resolve_lexical(base, entry.root), base, config.ingest.data_dirs):
        raise RegistryError([Problem(Path(registry), dataset_id, f"root {entry.root} lies outside the registry's "
                                     "folder and the allowed data folders",
                                     "list its parent folder in ingest.data_dirs (or MEDBENCH_DATA_DIRS)")])
    root = _resolve(base, entry.root)
    if not root.is_dir():
        raise RegistryError([Problem(Path(registry), dataset_id, f"root folder {root} does not exist", "fix 'root'")])
    names = known_names(root, entry, names_file, pairs or {})
    lm_path = _resolve(base, entry.label_map)
    table = _resolve(base, entry.pixel_size.table) if entry.pixel_size and entry.pixel_size.table else None
    source = Source(entry=entry, root=root, label_map=OpenLabelMap(values=names), label_map_path=lm_path,
                    pixel_table=table)
    res = ingest(source, config)
    found = Found(samples=res.samples.num_rows, quarantined=Counter(res.reason_counts))
    if found.samples == 0:
        raise RegistryError([Problem(Path(registry), dataset_id, "no readable sample: " + _why_empty(res),
                                     "fix the entry's root, format and options until `medbench sources check --scan` "
                                     "counts samples, then run `medbench labels init` again (no label map was written)")])
    for row in res.samples.to_pylist():
        found.labels.update(row["labels"] or [])
        found.labels.update(b["label"] for b in row["boxes"] or [])
        for v in row["label_values"] or []:
            found.values[int(v)] = source.label_map.name_of(v)
    if entry.format in NAMED_FORMATS:  # labels are names in the files; values mean nothing there
        found.values = {}
    return entry, lm_path, found


def _why_empty(res) -> str:
    """The quarantine reasons of an empty scan, most frequent first, with one example message each."""
    rows = res.quarantine.to_pylist()
    counts = Counter(r["reason_code"] for r in rows)
    first = {}
    for r in rows:
        first.setdefault(r["reason_code"], r["reason"])
    return "; ".join(f"{code} x{n}: {first[code]}" for code, n in counts.most_common(3)) or "nothing found"


def _q(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a valid YAML scalar


def render(entry: SourceEntry, found: Found, config: PipelineConfig) -> str:
    """The label map YAML, with suggestions and TODO markers as comments."""
    mesh = load_mesh(config.vocab.mesh_source)
    normalizer = Normalizer(mesh, load_curated(config.vocab.curated_dir))
    tagger = Tagger(load_curated(config.vocab.curated_dir).tagging)
    todo = 0
    lines = [f"# label map for {entry.id}, written by `medbench labels init` from {found.samples} sample(s).",
             "# Comments show what the vocabulary rules make of each label; resolve every TODO (see",
             "# docs/registering_datasets.md, 'Label maps'), then `medbench sources check --scan`.", f"dataset: {entry.id}"]
    if found.values:
        lines.append("values:")
        for v, name in sorted(found.values.items()):
            mark = "  # TODO: name this value" if name == TODO_VALUE.format(v) else ""
            todo += bool(mark)
            lines.append(f"  {v}: {_q(name)}{mark}")
    lines.append("labels:")
    n_lines = len(lines)
    for raw in sorted(found.labels):
        if raw == TODO_VALUE.format(raw.rsplit("_", 1)[-1]):
            continue
        res = normalizer.resolve(raw)
        tags = tagger.tag(res, entry.modality, Hints(), Hints())
        if res.status == "unresolved":
            todo += 1
            note = (f"TODO: unresolved ({res.reason}); give canonical + mesh_id + mesh_name, or canonical + "
                    "no_mesh, or accept: <reason> with task/department")
        else:
            where = f"MeSH {res.mesh_id}" if res.mesh_id else f"no MeSH: {res.reason}"
            note = f"-> {res.canonical_label!r} ({where}); rules: {', '.join(res.rules) or 'exact'}"
            if tags.issues:
                todo += 1
                note += f"; TODO: {'; '.join(tags.issues)}"
        lines.append(f"  {_q(raw)}: null  # {found.labels[raw]} sample(s) {note}")
    if len(lines) == n_lines:  # only unnamed values: an empty section, still a valid map
        lines[-1] = "labels: {}"
    lines.insert(3, f"# {todo} TODO(s)")
    return "\n".join(lines) + "\n"
