"""MeSH descriptors, their entry terms and tree numbers, from the shipped subset or a user's full copy.

Three inputs are accepted by :func:`load_mesh`:
- a folder holding ``*terms*.tsv.gz`` and ``*trees*.tsv.gz`` (the project's ``mesh_vocab/`` subset,
  or the full tables in the same column layout);
- NLM's official descriptor XML (``desc2024.xml`` or ``.xml.gz``).
"""

from __future__ import annotations

import gzip
import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from xml.etree import ElementTree

import pandas as pd

from pipelines.config import PROJECT_ROOT

DEFAULT_MESH_DIR = PROJECT_ROOT / "mesh_vocab"
TERM_COLUMNS = ["DescriptorUI", "DescriptorName", "TermName", "LexicalTag"]
ABBREVIATION_TAGS = {"ABB", "ACR", "ABX", "ACX"}
_ID = re.compile(r"^D\d{6,9}$")


class MeshError(ValueError):
    pass


@dataclass(frozen=True)
class Descriptor:
    ui: str
    name: str
    tree_numbers: tuple[str, ...]


@dataclass
class MeshVocab:
    """Descriptors plus two indexes: entry term -> descriptors, abbreviation -> descriptors."""

    version: str
    descriptors: dict[str, Descriptor]
    terms: dict[str, set[str]] = field(default_factory=dict)
    abbreviations: dict[str, set[str]] = field(default_factory=dict)

    def get(self, ui: str) -> Descriptor | None:
        return self.descriptors.get(ui)

    def lookup(self, term: str) -> set[str]:
        """Descriptor ids whose entry terms equal ``term`` (compared lower-cased, whitespace-collapsed)."""
        return self.terms.get(term_key(term), set())

    def expand_abbreviation(self, abbr: str) -> set[str]:
        return self.abbreviations.get(term_key(abbr), set())

    def check_id(self, ui: str, name: str | None = None) -> str | None:
        """None when ``ui`` exists (and, if given, ``name`` is one of its entry terms); else the problem."""
        if not _ID.match(ui or ""):
            return f"{ui!r} is not a MeSH descriptor id (expected D followed by digits)"
        desc = self.descriptors.get(ui)
        if desc is None:
            return f"{ui} is not a descriptor of MeSH {self.version}"
        if name is not None and ui not in self.lookup(name) and term_key(name) != term_key(desc.name):
            return f"{ui} is '{desc.name}', and {name!r} is not one of its entry terms"
        return None


def term_key(text: str) -> str:
    return " ".join(str(text).lower().split())


def _build(version: str, terms: pd.DataFrame, trees: pd.DataFrame) -> MeshVocab:
    col = {f"{name}.{c}": frame[c].tolist() for name, frame in (("terms", terms), ("trees", trees))
           for c in frame.columns}  # plain lists: iterating Arrow-backed string columns costs more than the rest
    tree_map: dict[str, list[str]] = defaultdict(list)
    for ui, tn in zip(col["trees.DescriptorUI"], col["trees.TreeNumber"]):
        tree_map[ui].append(tn)
    names = dict(zip(col["terms.DescriptorUI"], col["terms.DescriptorName"]))
    names.update(dict(zip(col["trees.DescriptorUI"], col["trees.DescriptorName"])))
    descriptors = {ui: Descriptor(ui, name, tuple(sorted(tree_map.get(ui, ())))) for ui, name in names.items()}
    term_index: dict[str, set[str]] = defaultdict(set)
    abbr_index: dict[str, set[str]] = defaultdict(set)
    for ui, term, tag in zip(col["terms.DescriptorUI"], col["terms.TermName"], col["terms.LexicalTag"]):
        if tag in ABBREVIATION_TAGS:
            abbr_index[term_key(term)].add(ui)
        else:
            term_index[term_key(term)].add(ui)
    for ui, name in names.items():
        term_index[term_key(name)].add(ui)
    return MeshVocab(version, descriptors, dict(term_index), dict(abbr_index))


def _read_tables(folder: Path) -> MeshVocab:
    term_files = sorted(folder.glob("*terms*.tsv.gz"))
    tree_files = sorted(folder.glob("*trees*.tsv.gz"))
    if len(term_files) != 1 or len(tree_files) != 1:
        raise MeshError(f"{folder}: expected exactly one *terms*.tsv.gz and one *trees*.tsv.gz "
                        f"(found {len(term_files)} and {len(tree_files)})")
    read = dict(sep="\t", dtype=str, keep_default_na=False)
    terms = pd.read_csv(term_files[0], usecols=TERM_COLUMNS, **read)
    trees = pd.read_csv(tree_files[0], usecols=["DescriptorUI", "DescriptorName", "TreeNumber"], **read)
    manifest = folder / "MANIFEST.json"
    version = json.loads(manifest.read_text())["mesh_version"] if manifest.exists() else term_files[0].name.split("_")[0]
    return _build(version, terms, trees)


def _read_xml(path: Path) -> MeshVocab:
    """Stream NLM's descriptor XML (DescriptorRecordSet) without holding the tree in memory."""
    opener = gzip.open if path.suffix == ".gz" else open
    term_rows, tree_rows = [], []
    version = "unknown"
    with opener(path, "rb") as fh:
        for _event, elem in ElementTree.iterparse(fh, events=("end",)):
            if elem.tag == "DescriptorRecordSet":
                version = elem.get("LanguageCode", "eng") + "-" + path.name
            if elem.tag != "DescriptorRecord":
                continue
            ui = elem.findtext("DescriptorUI")
            name = elem.findtext("DescriptorName/String")
            for tn in elem.iterfind("TreeNumberList/TreeNumber"):
                tree_rows.append((ui, name, tn.text))
            for term in elem.iterfind("ConceptList/Concept/TermList/Term"):
                term_rows.append((ui, name, term.findtext("String"), term.findtext("LexicalTag") or "NON"))
            elem.clear()
    match = re.search(r"(\d{4})", path.name)
    version = match.group(1) if match else version
    terms = pd.DataFrame(term_rows, columns=TERM_COLUMNS)
    trees = pd.DataFrame(tree_rows, columns=["DescriptorUI", "DescriptorName", "TreeNumber"])
    if terms.empty:
        raise MeshError(f"{path}: no DescriptorRecord found; is this NLM's descriptor XML (descYYYY.xml)?")
    return _build(version, terms, trees)


def load_mesh(source: str | Path | None = None) -> MeshVocab:
    """Load MeSH from ``source`` (folder of tables or descriptor XML); default: the shipped subset. Loaded once per
    process and path, however the path is spelled (``load_mesh()``, ``load_mesh(None)`` and the folder itself are
    one load: the vocabulary step asks for it twice)."""
    return _load_mesh(Path(source).resolve() if source else DEFAULT_MESH_DIR.resolve())


@lru_cache(maxsize=4)
def _load_mesh(path: Path) -> MeshVocab:
    if not path.exists():
        raise MeshError(f"MeSH source {path} does not exist; point vocab.mesh_source at a folder of "
                        "*terms*/*trees* tables or at NLM's descYYYY.xml")
    if path.is_dir():
        return _read_tables(path)
    if path.name.endswith((".xml", ".xml.gz")):
        return _read_xml(path)
    raise MeshError(f"MeSH source {path}: expected a folder of tables or a .xml/.xml.gz descriptor file")
