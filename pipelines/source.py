"""A registered dataset as the rest of the pipeline sees it: the registry entry's schema, the entry
resolved to absolute paths with its label map (`Source`), and the problems a registry can have.

These are plain records, so every stage (readers included) can hold a `Source` without importing the
loader that builds it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pipelines.label_maps import LabelMap
from pipelines.modalities import resolve_modality

FORMATS = (
    "image_folder", "csv_manifest", "npz", "coco", "voc", "yolo", "mask_pairs",
    "volume_pairs", "msd", "nnunet", "dicom_series", "dicom_seg", "rtstruct",
)
ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_]{1,63}$")


class GroupRule(BaseModel):
    """How a sample's group (patient, volume, source image) is derived, to keep splits disjoint."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["file", "filename_regex", "csv_column", "dicom_patient"] = "file"
    pattern: str | None = Field(None, description="regex over the relative path; group 1 or (?P<group>)")
    column: str | None = Field(None, description="manifest column holding the patient id")


class PixelSize(BaseModel):
    """The pixel size of a 2D dataset, where its files carry none: a documented constant, or a per-image table
    (CSV/TSV with one row per image: an id column matched to the image's path, file name or stem, and a value
    column). Square pixels; values in `unit`."""

    model_config = ConfigDict(extra="forbid")
    value: float | None = Field(None, gt=0, description="one size for every image of the dataset")
    table: Path | None = Field(None, description="CSV/TSV of per-image sizes; relative to the registry file")
    id_column: str | None = Field(None, description="the table's column naming the image")
    value_column: str | None = Field(None, description="the table's column holding the size")
    unit: Literal["nm", "um", "µm", "mm", "cm"] = "mm"
    encoding: str | None = Field(None, description="the table's text encoding (default: UTF-8, else detected)")
    source: str = Field("", description="where the value is documented (for the reader of the registry)")


class SourceEntry(BaseModel):
    """One registered source dataset."""

    model_config = ConfigDict(extra="forbid")
    id: str
    root: Path
    format: str
    modality: str
    dimension: Literal[2, 3]
    task_type: Literal["cls", "mcls", "det", "seg"]
    label_map: Path
    license: str
    group_rule: GroupRule = GroupRule()
    options: dict[str, Any] = {}
    readability_opt_out: list[str] = []  # gate rules (pipelines.gates.RULE_NAMES) this dataset is exempt from
    pixel_size: PixelSize | None = None  # 2D only: volumes take their voxel size from the header
    notes: str = ""

    @field_validator("modality", mode="before")
    @classmethod
    def _alias(cls, v: Any) -> Any:
        """'MR', 'T2', 'CXR' ... name the controlled modality they stand for; unknown names stay for the check."""
        return resolve_modality(v) or v if isinstance(v, str) else v


class RegistryFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: Literal[1] = 1
    datasets: list[dict[str, Any]]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the registry, phrased so the user knows what to change."""

    file: Path
    entry: str
    message: str
    fix: str

    def __str__(self) -> str:
        return f"{self.file} [{self.entry}]: {self.message}\n    fix: {self.fix}"


class RegistryError(ValueError):
    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__(
            f"{len(problems)} problem(s) in the source registry:\n" + "\n".join(map(str, problems))
        )


@dataclass(frozen=True)
class Source:
    """A validated registry entry with absolute paths and its parsed label map."""

    entry: SourceEntry
    root: Path
    label_map: LabelMap
    label_map_path: Path
    pixel_table: Path | None = None  # the registry's per-image pixel-size table, resolved

    def pixel_sizes(self):
        """The dataset's 2D pixel sizes (pipelines.geometry.PixelSizes); read when asked (the table may be large)."""
        from pipelines.geometry import PixelSizes, read_pixel_table
        ps = self.entry.pixel_size
        if ps is None:
            return PixelSizes()
        if ps.value is not None:
            from pipelines.geometry import MM_PER_UNIT
            return PixelSizes(constant_mm=ps.value * MM_PER_UNIT[ps.unit])
        if self.pixel_table is None:  # a Source built without the registry check (labels init): sizes unknown
            return PixelSizes()
        return read_pixel_table(self.pixel_table, ps.id_column or "", ps.value_column or "", ps.unit, ps.encoding)

    @property
    def id(self) -> str:
        return self.entry.id


@dataclass(frozen=True)
class Registry:
    path: Path
    sources: dict[str, Source]

    def get(self, dataset_id: str) -> Source:
        if dataset_id not in self.sources:
            raise KeyError(
                f"dataset '{dataset_id}' is not in {self.path}; known: {sorted(self.sources)}"
            )
        return self.sources[dataset_id]

    @property
    def ids(self) -> list[str]:
        return sorted(self.sources)


def _resolve(base: Path, p: Path) -> Path:
    return p if p.is_absolute() else (base / p).resolve()


def _resolve_lexical(base: Path, p: Path) -> Path:
    """Absolute, with '..' collapsed but symlinks kept (the path as written)."""
    return Path(os.path.normpath(p if p.is_absolute() else base / p))
