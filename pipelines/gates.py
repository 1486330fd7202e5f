"""Readability gates: named rules a candidate must pass before it may be selected.

Every rule reads the display geometry recorded at describe time (the image exactly as it will be
written), so a gate never needs a PNG. A unit is dropped under the first rule it fails (in
``RULES`` order, so the per-rule counts add up to the drops) and every rule it fails is kept too.
A registry entry may opt a dataset out of named rules (``readability_opt_out``); that is recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from pipelines.config import RULE_NAMES, GateSettings
from pipelines.records import GATE_VERDICTS


@dataclass(frozen=True)
class Rule:
    name: str
    explains: str
    fails: Callable[[pd.DataFrame, GateSettings], np.ndarray]


def _short(df: pd.DataFrame) -> np.ndarray:
    return np.minimum(df["image_width"], df["image_height"]).to_numpy(float)


def _has_mark(df: pd.DataFrame) -> np.ndarray:
    return df["mark_pixels"].notna().to_numpy()


RULES: tuple[Rule, ...] = (
    Rule("image_too_small", "shorter display side under gates.min_image_side",
         lambda df, g: _short(df) < g.min_image_side),
    Rule("image_too_elongated", "display aspect ratio over gates.max_aspect",
         lambda df, g: np.maximum(df["image_width"], df["image_height"]).to_numpy(float)
         > g.max_aspect * _short(df)),
    Rule("blank_image", "grey-level spread under gates.min_pixel_std",
         lambda df, g: df["contrast"].to_numpy(float) < g.min_pixel_std),
    Rule("mark_too_small", "mark under gates.min_mark_pixels display pixels or gates.min_mark_fraction of the image",
         lambda df, g: _has_mark(df) & ((df["mark_pixels"].fillna(0).to_numpy() < g.min_mark_pixels)
                                        | (df["mark_fraction"].fillna(0).to_numpy() < g.min_mark_fraction))),
    Rule("mark_too_thin", "mark's box thinner than gates.min_mark_side display px",
         lambda df, g: _has_mark(df) & (df["mark_min_side"].fillna(0).to_numpy() < g.min_mark_side)),
    Rule("mark_on_border", "mark lying wholly in the image's edge band",
         lambda df, g: _has_mark(df) & df["border_only"].fillna(False).to_numpy(bool)),
)
if tuple(r.name for r in RULES) != RULE_NAMES:  # the names the registry accepts are the rules that run
    raise ImportError("pipelines.gates.RULES and pipelines.config.RULE_NAMES name different rules")
IMAGE_RULES = ("image_too_small", "image_too_elongated", "blank_image")  # rules about the plane, not the mark


def readable_planes(df: pd.DataFrame, settings: GateSettings) -> np.ndarray:
    """Planes (image_width, image_height, contrast: display geometry) that pass every image rule: the only
    ones worth generating questions from."""
    ok = np.ones(len(df), bool)
    for rule in RULES:
        if rule.name in IMAGE_RULES:
            ok &= ~rule.fails(df, settings)
    return ok


def unreadable_planes(slices: pd.DataFrame, settings: GateSettings) -> dict[str, int]:
    """When no described plane passes the image rules: planes failing each image rule (a dataset none of whose
    planes can be shown readably yields no item by design, the gates' expected outcome). Empty otherwise.
    ``slices`` holds the slices table's display_width, display_height and contrast."""
    if slices.empty:
        return {}
    geo = slices.rename(columns={"display_width": "image_width", "display_height": "image_height"})
    if readable_planes(geo, settings).any():
        return {}
    return {r.name: int(r.fails(geo, settings).sum()) for r in RULES
            if r.name in IMAGE_RULES and r.fails(geo, settings).any()}


@dataclass
class GateResult:
    verdicts: pa.Table  # unit_id, gate, failed
    drops: pd.DataFrame  # dataset_id, rule, dropped, units (per dataset, per rule)
    opted_out: dict[str, list[str]]


def apply_gates(candidates: pd.DataFrame, settings: GateSettings,
                opt_outs: dict[str, list[str]] | None = None) -> GateResult:
    """One verdict per unit (twins share geometry: the first item stands for the unit)."""
    opt_outs = {k: v for k, v in (opt_outs or {}).items() if v}
    units = candidates.drop_duplicates("unit_id").sort_values("unit_id").reset_index(drop=True)
    datasets = units["dataset_id"]
    fails = np.zeros((len(units), len(RULES)), bool)  # unit x rule, in RULES order
    for k, rule in enumerate(RULES):
        if len(units):
            exempt = datasets.isin([d for d, names in opt_outs.items() if rule.name in names]).to_numpy(bool)
            fails[:, k] = rule.fails(units, settings) & ~exempt
    names = np.array(RULE_NAMES + ("",), dtype=object)
    gate = names[np.where(fails.any(axis=1), fails.argmax(axis=1), len(RULES))].tolist()  # the first rule failed
    _, rule_of = np.nonzero(fails)  # row-major: each unit's failed rules in RULES order
    failed = pa.ListArray.from_arrays(
        pa.array(np.r_[0, np.cumsum(fails.sum(axis=1))].astype(np.int32)),
        pa.array(names[rule_of].tolist(), pa.string()))
    verdicts = pa.Table.from_pydict({"unit_id": units["unit_id"].tolist(), "gate": gate, "failed": failed,
                                     "dataset_id": units["dataset_id"].tolist(),
                                     "source_path": units["source_path"].tolist(),
                                     "pipeline_version": units["pipeline_version"].tolist(),
                                     "seed": units["seed"].tolist()}, schema=GATE_VERDICTS)
    frame = pd.DataFrame({"dataset_id": units["dataset_id"], "gate": gate})
    rows = []
    for ds, part in frame.groupby("dataset_id", sort=True):
        for name in RULE_NAMES:
            rows.append({"dataset_id": ds, "rule": name, "dropped": int((part["gate"] == name).sum()),
                         "units": len(part), "opted_out": name in opt_outs.get(ds, [])})
    drops = pd.DataFrame(rows, columns=["dataset_id", "rule", "dropped", "units", "opted_out"])
    return GateResult(verdicts, drops, opt_outs)


def below_gate_datasets(drops: pd.DataFrame, share: float) -> dict[str, dict[str, float]]:
    """Datasets that lose more than ``share`` of their units to one rule: rule -> share lost."""
    out: dict[str, dict[str, float]] = {}
    for r in drops.itertuples(index=False):
        if r.units and r.dropped / r.units > share:
            out.setdefault(r.dataset_id, {})[r.rule] = round(r.dropped / r.units, 4)
    return out
