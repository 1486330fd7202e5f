"""What every source reader shares: the sample record, quarantine record, context and helpers.

A reader has two methods. ``scan`` walks a dataset and yields one :class:`SampleRecord` per
good sample (with what it found: shape, spacing, intensity range, label values) or one
:class:`Quarantined` per bad input. ``load`` returns the pixels of one scanned sample for the
standardization stage. Readers never raise for bad data; they quarantine it with a reason.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from pipelines import PIPELINE_VERSION
from pipelines.config import PipelineConfig
from pipelines.errors import Reason, SampleError
from pipelines.geometry import HEADER, UNKNOWN
from pipelines.ids import salted_hash, stable_id
from pipelines.source import Source
from pipelines.sourcefiles import Limits, file_problem, with_timeout


@dataclass
class Box:
    label: str
    x0: float
    y0: float
    x1: float
    y1: float

    def as_dict(self) -> dict[str, object]:
        return {"label": self.label, "x0": self.x0, "y0": self.y0, "x1": self.x1, "y1": self.y1}


@dataclass
class SampleRecord:
    """One row of raw_samples before provenance is attached."""

    key: str  # what makes the sample unique inside its dataset (drives sample_id)
    name: str  # human-readable case name
    source_path: str  # primary file, relative to the dataset root
    group_key: str  # raw group identifier (hashed with the salt before output)
    image_refs: list[str]
    label_ref: str | None = None
    labels: list[str] = field(default_factory=list)
    boxes: list[Box] = field(default_factory=list)
    label_values: list[int] = field(default_factory=list)
    shape: list[int] = field(default_factory=list)
    spacing: list[float] = field(default_factory=list)  # mm; empty: the files give no size
    spacing_source: str = ""  # header | registry | table | unknown; default: header when spacing is set
    orientation: str = ""
    intensity_min: float | None = None
    intensity_max: float | None = None
    meta: dict[str, object] = field(default_factory=dict)


@dataclass
class Quarantined:
    source_path: str
    reason: Reason
    message: str
    key: str | None = None


@dataclass
class LabelLayer:
    """Integer label array (or sitk image) and the names of its values; layers may overlap."""

    data: object
    names: dict[int, str]


@dataclass
class LoadedSample:
    """Pixels of one sample: a 2D array (H, W[, 3]) or a SimpleITK 3D image, plus annotations."""

    dim: int
    image: object
    layers: list[LabelLayer] = field(default_factory=list)
    boxes: list[Box] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    photometric: str = ""


@dataclass
class ReadContext:
    source: Source
    config: PipelineConfig
    options: dict[str, Any] = field(default_factory=dict)  # the reader's options with their defaults, set by it

    @property
    def root(self) -> Path:
        return self.source.root

    def resolve(self, rel: str | Path) -> Path:
        """Resolve a path from an annotation inside the dataset root, refusing traversal."""
        # normpath, not resolve: '..' may not climb out, but symlinked files inside the root are fine
        p = Path(os.path.normpath(self.root / rel))
        if not p.is_relative_to(self.root):
            raise SampleError(Reason.PATH_TRAVERSAL,
                              f"path '{rel}' points outside the dataset root {self.root}; "
                              "annotations may only reference files inside the dataset", str(rel))
        if not p.exists():
            if p.is_symlink() or os.path.lexists(p):  # the link is there, its target is not (or loops)
                _, problem = file_problem(p, str(rel), self.limits)
                if problem is not None:
                    raise problem.error()
            raise SampleError(Reason.MISSING_FILE,
                              f"'{rel}' is referenced but does not exist under {self.root}", str(rel))
        if not p.is_dir():  # folders are listed by the readers; files must be regular and under the cap
            _, problem = file_problem(p, str(rel), self.limits)
            if problem is not None:
                raise problem.error()
        self.check_inside(p, str(rel))
        return p

    @cached_property
    def trusted_dirs(self) -> tuple[Path, ...]:
        """Real paths files may lie under: the root and every folder the registry entry's options name (a root
        built of symlinks to the real image and mask folders is the user's own layout, not a file planted in
        a downloaded dataset)."""
        dirs = [self.root.resolve()]
        options = self.options or self.source.entry.options  # the reader's view: with defaults ('images', ...)
        for value in options.values():
            if isinstance(value, str) and value and not os.path.isabs(value):
                p = Path(os.path.normpath(self.root / value))
                if p.is_relative_to(self.root) and p.is_dir():
                    dirs.append(p.resolve())
        return tuple(dict.fromkeys(dirs))

    @property
    def limits(self) -> Limits:
        return self.config.ingest.limits

    def check_inside(self, path: Path, rel: str) -> None:
        """A symlink inside the root may not lead outside it or the folders the entry names (unless
        ingest.allow_external_symlinks)."""
        if self.config.ingest.allow_external_symlinks or not (path.is_symlink() or any(
                q.is_symlink() for q in path.parents if q.is_relative_to(self.root) and q != self.root)):
            return
        real = path.resolve()
        if not any(real.is_relative_to(d) for d in self.trusted_dirs):
            raise SampleError(Reason.PATH_TRAVERSAL,
                              f"'{rel}' is a symlink to {real}, outside the dataset root {self.root} and the folders "
                              "its registry options name; copy the file into the dataset, name its folder in the "
                              "options (or set ingest.allow_external_symlinks: true)", rel)

    def rel(self, path: Path) -> str:
        return Path(os.path.normpath(path)).relative_to(self.root).as_posix()

    def group_key(self, rel_path: str, column_value: str | None = None) -> str:
        """The raw group key from the dataset's group rule."""
        rule = self.source.entry.group_rule
        if rule.kind == "filename_regex":
            m = re.search(rule.pattern or "", rel_path)
            if m:
                return m.groupdict().get("group") or (m.group(1) if m.groups() else m.group(0))
            return rel_path
        if rule.kind == "csv_column" and column_value:
            return str(column_value)
        return rel_path

    def check_label(self, label: str, where: str) -> None:
        if label not in self.source.label_map.names:
            raise SampleError(Reason.UNKNOWN_LABEL,
                              f"label '{label}' is not in the label map {self.source.label_map_path.name}; "
                              "add it there (or list it under 'ignore')", where)

    def sample_row(self, rec: SampleRecord) -> dict[str, object]:
        e = self.source.entry
        return {
            "sample_id": stable_id(e.id, e.format, rec.key),
            "group_id": salted_hash(f"{e.id}\x1f{rec.group_key}", self.config.id_salt),
            "name": rec.name,
            "image_refs": rec.image_refs,
            "label_ref": rec.label_ref,
            "dim": e.dimension,
            "modality": e.modality,
            "task_type": e.task_type,
            "labels": rec.labels,
            "boxes": [b.as_dict() for b in rec.boxes],
            "label_values": [int(v) for v in rec.label_values],
            "shape": [int(s) for s in rec.shape],
            "spacing": [float(s) for s in rec.spacing],
            "spacing_source": rec.spacing_source or (HEADER if rec.spacing else UNKNOWN),
            "orientation": rec.orientation,
            "intensity_min": rec.intensity_min,
            "intensity_max": rec.intensity_max,
            "reader_meta": json.dumps(rec.meta, sort_keys=True),
            "dataset_id": e.id,
            "source_path": rec.source_path,
            "pipeline_version": PIPELINE_VERSION,
            "seed": self.config.seed,
        }


class Reader:
    """Base class: subclasses set ``format`` and ``Options`` and implement scan/load."""

    format: ClassVar[str]

    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid")

    def __init__(self, ctx: ReadContext):
        self.ctx = ctx
        self.opts = self.Options.model_validate(ctx.source.entry.options)
        ctx.options = self.opts.model_dump()

    def scan(self) -> Iterator[SampleRecord | Quarantined]:  # pragma: no cover - interface
        raise NotImplementedError

    def load(self, row: dict[str, object]) -> LoadedSample:  # pragma: no cover - interface
        raise NotImplementedError

    def empty_hint(self) -> str:
        """Why a scan found nothing, when the reader can tell (files of an extension it does not read)."""
        return ""

    def load_pixels(self, row: dict[str, object]) -> LoadedSample:
        """The sample's pixels for rendering (marks come from the described RLE, not the labels): readers whose
        labels are a separate file override this to skip decoding them."""
        return self.load(row)

    # helpers shared by readers -------------------------------------------------------
    def guarded(self, rel: str, fn, key: str | None = None) -> SampleRecord | Quarantined:
        """Run ``fn`` for one sample under the read deadline (ingest.read_timeout_s); a SampleError, a
        decoding failure or a timeout becomes a quarantine row."""
        try:
            return with_timeout(fn, self.ctx.limits.timeout_s, rel)
        except SampleError as exc:
            return Quarantined(exc.path or rel, exc.reason, str(exc), key)
        except (OSError, ValueError, RuntimeError, KeyError, IndexError, TypeError,
                AttributeError, EOFError) as exc:
            return Quarantined(rel, Reason.CORRUPT_FILE,
                               f"could not read '{rel}': {type(exc).__name__}: {exc}", key)


def intensity_range(arr: np.ndarray) -> tuple[float, float]:
    if arr.size == 0:
        return 0.0, 0.0
    return float(np.min(arr)), float(np.max(arr))


def check_finite(arr: np.ndarray, where: str) -> None:
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise SampleError(Reason.NON_FINITE,
                          f"'{where}' has {bad} NaN/Inf values; re-export it without them", where)


def named_values(labels: np.ndarray, ctx: "ReadContext", ref: str, what: str) -> list[int]:
    """Non-zero values of a label array, each of which the label map must name."""
    return checked_values(present_values(labels), ctx, ref, what)


def checked_values(values: list[int], ctx: "ReadContext", ref: str, what: str) -> list[int]:
    """The non-zero values found in a label file, each of which the label map must name."""
    if not values:
        raise SampleError(Reason.EMPTY_MASK, f"{what} '{ref}' has no foreground", ref)
    unknown = [v for v in values if ctx.source.label_map.name_of(v) is None]
    if unknown:
        raise SampleError(Reason.UNKNOWN_LABEL,
                          f"{what} '{ref}' has value(s) {unknown} that the label map does not name; "
                          "add them under 'values'", ref)
    return values


def present_values(labels: np.ndarray) -> list[int]:
    """Sorted non-zero label values (bincount is much faster than unique for small ints), counted a slab at a
    time: bincount widens its input to 64 bits, eight times a uint8 volume."""
    flat = labels.reshape(-1)
    if labels.dtype.kind in "ui" and labels.size and labels.min() >= 0 and labels.max() < 65536:
        counts = np.zeros(int(labels.max()) + 1, np.int64)
        for k in range(0, flat.size, 1 << 22):
            counts += np.bincount(flat[k:k + (1 << 22)], minlength=counts.size)
        return [int(v) for v in np.nonzero(counts)[0] if v != 0]
    return [int(v) for v in np.unique(labels) if v != 0]
