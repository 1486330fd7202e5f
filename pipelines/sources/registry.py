"""The source registry (sources.yaml): a typed list of datasets, validated before anything runs.

Every problem is reported with the registry file, the entry and the fix, all at once, so a
user can correct the file in one pass.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import yaml
from pydantic import ValidationError

from pipelines.config import RULE_NAMES
from pipelines.label_maps import LabelMapError, load_label_map, read_text_utf8
from pipelines.modalities import MODALITIES
from pipelines.source import (
    FORMATS,
    ID_PATTERN,
    Problem,
    Registry,
    RegistryError,
    RegistryFile,
    Source,
    SourceEntry,
    _resolve,
    _resolve_lexical,
)


def configured_data_dirs() -> list[Path]:
    """ingest.data_dirs of the configuration the environment names (MEDBENCH_CONFIG, MEDBENCH_DATA_DIRS)."""
    from pipelines.config import PipelineConfig
    try:
        return list(PipelineConfig.load().ingest.data_dirs)
    except (OSError, ValueError):  # an unreadable config is reported where it is loaded for the run
        return [Path(d) for d in os.environ.get("MEDBENCH_DATA_DIRS", "").split(os.pathsep) if d]


def registry_of(config) -> "Registry":
    """The registry a configuration names, with its CT windows and allowed data folders."""
    return load_registry(config.registry, config.standardize.ct_windows, config.ingest.data_dirs)


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or path.is_relative_to(folder)


def root_allowed(root: Path, registry_dir: Path, data_dirs: Iterable[Path]) -> bool:
    """A root lies inside the registry's folder or an allowed data folder, written as it is (``..`` resolved) or
    after following its symlinks: a link the user placed there is a deliberate choice, ``../../etc`` is not."""
    folders = [registry_dir, *(Path(d).expanduser() for d in data_dirs)]
    lexical = Path(os.path.normpath(root))
    candidates = [Path(os.path.normpath(f.absolute())) for f in folders] + [f.resolve() for f in folders]
    return any(_inside(lexical, f) or _inside(root.resolve(), f) for f in candidates)


def load_registry(path: str | Path, ct_windows: Iterable[str] | None = None,
                  data_dirs: Iterable[Path] | None = None) -> Registry:
    """Parse and validate a registry; raise :class:`RegistryError` listing every problem.

    `ct_windows` are the configured window names label maps may use (the defaults when None). A dataset
    root must lie inside the registry's folder or one of `data_dirs` (``ingest.data_dirs`` of the
    configuration the environment names when None), so a registry cannot send the readers through the
    rest of the file system."""
    data_dirs = list(configured_data_dirs() if data_dirs is None else data_dirs)
    from pipelines.sources import (
        READERS,  # local import: readers import the registry types
    )

    path = Path(path).resolve()
    problems: list[Problem] = []
    if not path.exists():
        raise RegistryError([Problem(path, "-", "registry file not found",
                                     "create it (see sources.yaml in the project) or pass --registry / "
                                     "set MEDBENCH_REGISTRY to an existing file")])
    try:
        text = read_text_utf8(path, "registry")
    except ValueError as exc:
        raise RegistryError([Problem(path, "-", str(exc).split("; fix:")[0], "save the file as UTF-8")]) from exc
    try:
        raw = yaml.safe_load(text) or {}
        doc = RegistryFile.model_validate(raw)
    except (yaml.YAMLError, ValidationError) as exc:
        raise RegistryError([Problem(path, "-", f"not a valid registry: {exc}",
                                     "the file needs 'version: 1' and a 'datasets:' list")]) from exc

    base = path.parent
    ids = Counter(str(d.get("id")) for d in doc.datasets)
    sources: dict[str, Source] = {}
    for i, raw_entry in enumerate(doc.datasets):
        name = str(raw_entry.get("id", f"#{i + 1}"))
        try:
            entry = SourceEntry.model_validate(raw_entry)
        except ValidationError as exc:
            for err in exc.errors():
                loc = ".".join(str(x) for x in err["loc"])
                problems.append(Problem(path, name, f"field '{loc}': {err['msg']}",
                                        "see the registry fields in docs/registering_datasets.md (id, root, format, modality, "
                                        "dimension, task_type, label_map, license, group_rule, options)"))
            continue
        if not ID_PATTERN.match(entry.id):
            problems.append(Problem(path, name, f"id '{entry.id}' is not a slug",
                                    "use 2-64 lowercase letters, digits and '_' (no ',' '|' or spaces)"))
        if ids[entry.id] > 1:
            problems.append(Problem(path, name, f"duplicate id '{entry.id}' ({ids[entry.id]} entries)",
                                    "give every dataset its own id"))
            ids[entry.id] = 0  # report once
        if entry.format not in FORMATS:
            problems.append(Problem(path, name, f"unknown format '{entry.format}'",
                                    f"use one of: {', '.join(FORMATS)}"))
        if entry.modality not in MODALITIES:
            problems.append(Problem(path, name, f"unknown modality '{entry.modality}'",
                                    f"use one of: {', '.join(sorted(MODALITIES))} (aliases such as MR, T1, T2, "
                                    "CXR, US are accepted)"))
        unknown_rules = sorted(set(entry.readability_opt_out) - set(RULE_NAMES))
        if unknown_rules:
            problems.append(Problem(path, name, f"readability_opt_out names unknown rules {unknown_rules}",
                                    f"use rule names from: {', '.join(RULE_NAMES)}"))
        root = _resolve_lexical(base, entry.root)
        if not root_allowed(root, base, data_dirs):
            allowed = ", ".join(str(d) for d in [base, *data_dirs])
            problems.append(Problem(path, name, f"root {entry.root} resolves to {root.resolve()}, outside the "
                                    f"registry's folder and the allowed data folders ({allowed})",
                                    "move the dataset under the registry's folder, or list its parent folder in "
                                    "ingest.data_dirs of the config (--config) or MEDBENCH_DATA_DIRS"))
            continue
        root = _resolve(base, entry.root)
        if not root.is_dir():
            problems.append(Problem(path, name, f"root folder {root} does not exist",
                                    "fix 'root' (relative paths are relative to the registry file); for the "
                                    "demo registry run `medbench demo prepare` first"))
        lm_path = _resolve(base, entry.label_map)
        label_map = None
        if not lm_path.is_file():
            problems.append(Problem(path, name, f"label map {lm_path} does not exist",
                                    "create it (one YAML per dataset, see label_maps/) or fix 'label_map'"))
        else:
            try:
                label_map = load_label_map(lm_path, ct_windows)
            except LabelMapError as exc:
                problems.append(Problem(path, name, str(exc), "correct the label map YAML"))
        if entry.format in READERS:
            try:
                READERS[entry.format].Options.model_validate(entry.options)
            except ValidationError as exc:
                for err in exc.errors():
                    loc = ".".join(str(x) for x in err["loc"])
                    problems.append(Problem(path, name, f"options.{loc}: {err['msg']}",
                                            f"see the '{entry.format}' reader options in docs/registering_datasets.md"))
        if entry.group_rule.kind == "filename_regex":
            try:
                re.compile(entry.group_rule.pattern or "")
            except re.error as exc:
                problems.append(Problem(path, name, f"group_rule.pattern is not a regex: {exc}",
                                        "write a Python regex with one group for the patient id"))
            if not entry.group_rule.pattern:
                problems.append(Problem(path, name, "group_rule kind filename_regex needs 'pattern'",
                                        "add pattern: with one capture group"))
        if entry.group_rule.kind == "csv_column" and not entry.group_rule.column:
            problems.append(Problem(path, name, "group_rule kind csv_column needs 'column'",
                                    "add column: <manifest column with the patient id>"))
        pixel_table = _pixel_size_problems(path, name, entry, base, problems)
        if label_map is not None and entry.id not in sources:
            sources[entry.id] = Source(entry=entry, root=root, label_map=label_map, label_map_path=lm_path,
                                       pixel_table=pixel_table)
    if problems:
        raise RegistryError(problems)
    return Registry(path=path, sources=sources)


def _pixel_size_problems(path: Path, name: str, entry: SourceEntry, base: Path, problems: list[Problem]) -> Path | None:
    """Check the entry's `pixel_size` (one of value / table with its columns; 2D only); returns the table path."""
    ps = entry.pixel_size
    if ps is None:
        return None
    fix = ("write pixel_size: {value: 0.004, unit: um} for one documented size, or pixel_size: {table: sizes.csv, "
           "id_column: filename, value_column: pixel_mm, unit: mm} for one size per image (docs/geometry.md)")
    if entry.dimension != 2:
        problems.append(Problem(path, name, "pixel_size is for 2D datasets; a volume's voxel size comes from its header",
                                "remove pixel_size (fix the volume's header if its spacing is wrong)"))
        return None
    if (ps.value is None) == (ps.table is None):
        problems.append(Problem(path, name, "pixel_size needs exactly one of 'value' and 'table'", fix))
        return None
    if ps.table is None:
        return None
    if not ps.id_column or not ps.value_column:
        problems.append(Problem(path, name, "pixel_size.table needs 'id_column' and 'value_column'", fix))
    table = _resolve(base, ps.table)
    if not table.is_file():
        problems.append(Problem(path, name, f"pixel-size table {table} does not exist",
                                "fix pixel_size.table (relative paths are relative to the registry file)"))
    elif ps.id_column and ps.value_column:
        from pipelines.geometry import PixelTableError, read_pixel_table
        try:
            read_pixel_table(table, ps.id_column, ps.value_column, ps.unit, ps.encoding)
        except (PixelTableError, ValueError) as exc:
            problems.append(Problem(path, name, str(exc).split("; fix")[0], "fix the table or the column names"))
    return table
