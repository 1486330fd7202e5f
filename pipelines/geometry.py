"""Pixel size as a recorded fact: every sample's spacing carries where it came from.

A volume's voxel size comes from its header. A 2D image file (PNG, JPEG, BMP...) has no trustworthy pixel
size, so it is *unknown* unless the registry gives one: a constant for the whole dataset (``registry``,
e.g. the documented 4 x 4 nm of the ISBI 2012 EM stack) or a per-image table (``table``: a CSV naming the
file, the id column and the value column, as HC18's pixel-size CSV does). An unknown size is stored as an
empty spacing, so nothing downstream can turn it into millimetres by accident; the display still assumes
square pixels.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.errors import SampleError
from pipelines.textio import decode_text

HEADER, REGISTRY, TABLE, UNKNOWN = "header", "registry", "table", "unknown"
SPACING_SOURCES = (HEADER, REGISTRY, TABLE, UNKNOWN)
MM_PER_UNIT = {"nm": 1e-6, "um": 1e-3, "µm": 1e-3, "mm": 1.0, "cm": 10.0}


class PixelTableError(ValueError):
    """The pixel-size table cannot be used at all (missing file, missing column); names the file and the fix."""


@dataclass
class PixelSizes:
    """A dataset's 2D pixel sizes: a constant, a per-image table, or nothing (unknown)."""

    constant_mm: float | None = None
    by_id: dict[str, float] = field(default_factory=dict)
    table: str = ""  # the table's file name, for messages
    problems: list[str] = field(default_factory=list)  # table rows that could not be used
    unmatched: list[str] = field(default_factory=list)  # samples the table has no row for

    def lookup(self, source_path: str, name: str = "") -> tuple[list[float], str]:
        """([x, y] spacing in mm, its origin) of a 2D sample; the table is matched on the sample's path
        relative to the dataset root, its file name, then its stem."""
        if self.constant_mm is not None:
            return [self.constant_mm, self.constant_mm], REGISTRY
        if self.table:
            base = os.path.basename(source_path)
            for key in (source_path, base, os.path.splitext(base)[0], name):
                if key and key in self.by_id:
                    v = self.by_id[key]
                    return [v, v], TABLE
            self.unmatched.append(source_path)
        return [], UNKNOWN

    def notes(self) -> list[str]:
        """What a user should know about the table (bad rows, images without a row)."""
        out = list(self.problems)
        if self.unmatched:
            shown = ", ".join(self.unmatched[:5]) + (" ..." if len(self.unmatched) > 5 else "")
            out.append(f"{len(self.unmatched)} image(s) have no row in the pixel-size table {self.table} "
                       f"(their size is unknown; no physical-unit question is asked about them): {shown}")
        return out


def read_pixel_table(path: Path, id_column: str, value_column: str, unit: str, encoding: str | None = None) -> PixelSizes:
    """Id -> pixel size (mm) from a CSV/TSV. A bad value or an id listed twice with different values is left
    out and named in ``problems`` (that image's size stays unknown); a missing file or column is an error."""
    if not path.is_file():
        raise PixelTableError(f"pixel-size table {path} does not exist; fix 'pixel_size.table' (relative paths are "
                              "relative to the registry file)")
    try:
        text, _ = decode_text(path.read_bytes(), path.name, encoding)
    except SampleError as exc:
        raise PixelTableError(str(exc)) from exc
    sep = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=sep))
    header = [h.strip() for h in rows[0]] if rows else []
    missing = [c for c in (id_column, value_column) if c not in header]
    if missing:
        raise PixelTableError(f"pixel-size table {path.name} lacks column(s) {missing}; it has {header}; fix "
                              "'pixel_size.id_column' / 'pixel_size.value_column'")
    i_id, i_val = header.index(id_column), header.index(value_column)
    scale = MM_PER_UNIT[unit]
    out = PixelSizes(table=path.name)
    seen: dict[str, float] = {}
    conflicts: Counter = Counter()
    for line, fields in enumerate(rows[1:], start=2):
        if not any(f.strip() for f in fields):
            continue
        if len(fields) <= max(i_id, i_val):
            out.problems.append(f"{path.name} line {line}: {len(fields)} field(s), fewer than the header's")
            continue
        key, raw = fields[i_id].strip(), fields[i_val].strip()
        try:
            value = float(raw) * scale
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value > 0):
            out.problems.append(f"{path.name} line {line}: pixel size {raw!r} of {key!r} is not a positive number")
            continue
        if key in seen and not math.isclose(seen[key], value, rel_tol=1e-9):
            conflicts[key] += 1
        seen.setdefault(key, value)
    for key in sorted(conflicts):
        out.problems.append(f"{path.name}: {key!r} is listed with different pixel sizes; its size is left unknown")
        seen.pop(key)
    out.by_id = seen
    return out


def plane_spacing_2d(sample_spacing: list[float] | None) -> list[float]:
    """A 2D plane's (column, row) spacing in mm, or [] when unknown."""
    sp = [float(v) for v in (sample_spacing if sample_spacing is not None else [])]
    return sp[:2] if len(sp) >= 2 and min(sp[:2]) > 0 else []
