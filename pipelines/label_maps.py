"""Per-dataset label maps (label_maps/<dataset>.yaml): raw values and names a source may use.

A label map says which raw labels exist (and, for masks and arrays, which integer value
means which label). A label met in the data but absent here is quarantined, never guessed.
Every key and every controlled value is checked when the file is loaded, so a typo is
reported with the file, the key and the fix instead of failing deep inside a later stage.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from pipelines.taxonomy import DEPARTMENTS, SEMANTIC_TYPES, TASKS


class LabelMapError(ValueError):
    pass


def default_ct_windows() -> set[str]:
    from pipelines.config import (
        StandardizeSettings,  # local: config is heavier than this module
    )

    return set(StandardizeSettings().ct_windows)


def _controlled(value: str | None, allowed: Iterable[str], what: str) -> str | None:
    if value is not None and value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; use one of: {', '.join(sorted(allowed))}")
    return value


class _Tags(BaseModel):
    """Tag pins shared by a label and the dataset defaults; values come from GMAI-MMBench's lists."""

    model_config = ConfigDict(extra="forbid")
    semantic_type: str | None = Field(None, description="organ, lesion, cell, ... (pipelines/vocab/taxonomy.py)")
    task: str | None = Field(None, description="clinical VQA task (GMAI-MMBench's 18)")
    department: str | None = Field(None, description="department (GMAI-MMBench's 18, or N/A)")

    @field_validator("semantic_type")
    @classmethod
    def _semantic_type(cls, v: str | None) -> str | None:
        return _controlled(v, SEMANTIC_TYPES, "semantic_type")

    @field_validator("task")
    @classmethod
    def _task(cls, v: str | None) -> str | None:
        return _controlled(v, TASKS, "task")

    @field_validator("department")
    @classmethod
    def _department(cls, v: str | None) -> str | None:
        return _controlled(v, DEPARTMENTS, "department")


class LabelSpec(_Tags):
    """Per-label hints for later stages; every vocabulary field pins what the rules would decide."""

    ct_window: str | None = Field(None, description="named CT window (standardize.ct_windows)")
    canonical: str | None = Field(None, description="canonical label to use instead of the rules' result")
    mesh_id: str | None = Field(None, description="MeSH descriptor id of `canonical` (checked against MeSH)")
    mesh_name: str | None = Field(None, description="the descriptor's name or entry term (checked)")
    no_mesh: str | None = Field(None, description="why `canonical` has no MeSH descriptor")
    accept: str | None = Field(None, description="accept this label unresolved, for this reason")
    exclude: str | None = Field(None, description="keep the regions but never ask about this label nor offer it as an "
                                                 "option, for this reason (test segments, colour names, body outline)")
    exhaustive: bool | None = Field(None, description="every instance of this label is annotated on every image, "
                                                      "so counting it is valid (default: the map's `exhaustive`)")
    contains: list[str] = Field([], description="labels of this map whose regions lie inside this one's (a tumour "
                                                "core inside the whole tumour): never offered beside it, either way")
    visible_on: list[str] = Field([], description="modalities this label can be seen on (enhancing tumour: T1 "
                                                  "contrast-enhanced MRI); a registration of another modality never "
                                                  "asks about it nor offers it")

    @field_validator("visible_on")
    @classmethod
    def _visible_on(cls, v: list[str]) -> list[str]:
        from pipelines.modalities import MODALITIES, resolve_modality
        out = [resolve_modality(m) for m in v]
        if None in out:
            bad = [m for m, r in zip(v, out) if r is None]
            raise ValueError(f"unknown modality {bad}; use one of: {', '.join(MODALITIES)}")
        return out

    @field_validator("ct_window")
    @classmethod
    def _window(cls, v: str | None, info: ValidationInfo) -> str | None:
        windows = (info.context or {}).get("ct_windows") or default_ct_windows()
        return _controlled(v, windows, "ct_window")

    @model_validator(mode="after")
    def _pins(self) -> "LabelSpec":
        if (self.mesh_id or self.no_mesh) and not self.canonical:
            raise ValueError("mesh_id/no_mesh pin a canonical label: give `canonical` too")
        if self.mesh_id and not self.mesh_name:
            raise ValueError(f"mesh_id {self.mesh_id} needs mesh_name so the mapping can be checked")
        if self.mesh_id and self.no_mesh:
            raise ValueError("give mesh_id or no_mesh, not both")
        return self


class LabelMap(_Tags):
    dataset: str | None = None
    values: dict[int, str] = {}
    labels: dict[str, LabelSpec | None] = {}
    ignore: list[str] = []
    context: str | None = Field(None, description="body region for context synonyms: chest, abdomen, eye, ...")
    exhaustive: bool = Field(False, description="default of every label's `exhaustive`: counting items are made "
                                                "only for labels whose every instance is annotated")
    notes: str = Field("", description="free text for the reader of the file (which observer's masks, what was "
                                       "left out and why); not used by the pipeline")

    @field_validator("values", "labels", "ignore", mode="before")
    @classmethod
    def _empty(cls, v: Any, info: ValidationInfo) -> Any:
        """`labels:` with nothing under it is YAML null: an empty section, not an error."""
        return ([] if info.field_name == "ignore" else {}) if v is None else v

    @model_validator(mode="after")
    def _nesting(self) -> "LabelMap":
        names = set(self.labels) | set(self.values.values())
        for name, spec in self.labels.items():
            unknown = [c for c in (spec.contains if spec else []) if c not in names or c == name]
            if unknown:
                raise ValueError(f"labels.{name}.contains names {unknown}, which are not other labels of this map; "
                                 "list raw label names from `values` or `labels`")
        return self

    def model_post_init(self, __context: object) -> None:
        for name in self.values.values():
            self.labels.setdefault(name, None)


    @property
    def names(self) -> set[str]:
        return set(self.labels)

    def spec(self, name: str) -> LabelSpec:
        return self.labels.get(name) or LabelSpec()

    def exhaustive_labels(self) -> set[str]:
        """Labels whose annotation is exhaustive (the only ones counting questions may ask about)."""
        return {n for n in self.labels if (self.spec(n).exhaustive if self.spec(n).exhaustive is not None
                                            else self.exhaustive)}

    def name_of(self, value: int) -> str | None:
        return self.values.get(int(value))


TOP_KEYS = tuple(LabelMap.model_fields)
LABEL_KEYS = tuple(LabelSpec.model_fields)


def _explain(err: dict[str, Any]) -> str:
    """One line per pydantic error: where, what, and how to fix it."""
    loc = [str(x) for x in err["loc"]]
    where = ".".join(loc) or "(top level)"
    if err["type"] == "extra_forbidden":
        allowed = LABEL_KEYS if len(loc) >= 3 and loc[0] == "labels" else TOP_KEYS
        return f"unknown key {loc[-1]!r} at {where}; fix: use one of {', '.join(allowed)} (see docs/registering_datasets.md, 'Label maps')"
    msg = err["msg"].removeprefix("Value error, ")
    return f"{where}: {msg}; fix: see docs/registering_datasets.md, 'Label maps'"


def read_text_utf8(path: Path, what: str, error: type[Exception] = ValueError) -> str:
    """The file's text, or a clear error naming the file when it is not UTF-8."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(f"{what} {path} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                    "fix: save the file as UTF-8") from exc


def load_label_map(path: Path, ct_windows: Iterable[str] | None = None) -> LabelMap:
    text = read_text_utf8(path, "label map", LabelMapError)
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise LabelMapError(f"label map {path} is not valid YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise LabelMapError(f"label map {path} must be a mapping (values:, labels:, ...), got {type(doc).__name__}")
    try:
        return LabelMap.model_validate(doc, context={"ct_windows": set(ct_windows) if ct_windows else None})
    except ValidationError as exc:
        lines = "\n  ".join(_explain(e) for e in exc.errors())
        raise LabelMapError(f"label map {path} is invalid:\n  {lines}") from exc
