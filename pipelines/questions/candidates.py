"""Candidates as rows: every question the described regions allow, with the geometry the gates read.

Nothing here touches pixels. A *target* is what a question marks (one instance, all instances of a
label on one plane, a box, or the whole image); a *unit* is one question (mask and contour twins of a
target are one unit, two items). Eligibility that does not depend on chance (label resolved and
tagged, a pool with a certainly-wrong option, a template) is decided here per distinct label set,
so selection never picks a unit that cannot be built; the seeded choices (template, options,
letters) are made later, for the selected units only.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

from pipelines import PIPELINE_VERSION
from pipelines.config import PipelineConfig
from pipelines.ids import stable_id
from pipelines.modalities import GMAI_MODALITY, QUESTION_FAMILY
from pipelines.questions.options import PoolKey, distractor_candidates, pool_key
from pipelines.questions.picker import TemplatePicker
from pipelines.questions.validate import granularity_group
from pipelines.records import CANDIDATES
from pipelines.vocab.hierarchy import Hierarchy
from pipelines.vocab.taxonomy import KIND_GRANULARITIES

LETTERS = "ABCDE"


@dataclass
class DatasetRows:
    """What one dataset contributes: its registry facts and its described rows."""

    dataset_id: str
    modality: str
    task_type: str
    slices: pd.DataFrame
    regions: pd.DataFrame
    samples: pd.DataFrame  # sample_id, dim


@dataclass
class CandidateSet:
    table: pa.Table
    skipped: Counter = field(default_factory=Counter)  # reason -> items
    skipped_by_dataset: dict[str, Counter] = field(default_factory=dict)


def targets(regions: pd.DataFrame, scope: str) -> pd.DataFrame:
    """One row per thing a question marks. Mask instances of one label on one plane are grouped
    (``scope='label'``), kept apart (``'instance'``) or both; boxes and whole images stay single."""
    cols = ["target_id", "scope", "kind", "image_id", "raw_label", "labels", "member_region_ids",
            "x0", "y0", "x1", "y1", "area_px"]
    if regions.empty:
        return pd.DataFrame(columns=cols)
    r = regions.assign(x0=regions["bbox"].str[0], y0=regions["bbox"].str[1], x1=regions["bbox"].str[2],
                       y1=regions["bbox"].str[3])
    single = r[r["kind"] != "mask"].assign(scope=np.where(r.loc[r["kind"] != "mask", "kind"] == "image", "image", "instance"))
    out = [single.assign(target_id=single["region_id"], member_region_ids=single["region_id"].map(lambda x: [x]))]
    masks = r[r["kind"] == "mask"].sort_values(["image_id", "raw_label", "component_index"])
    if not masks.empty:
        g = masks.groupby(["image_id", "raw_label"], sort=True)
        agg = g.agg(x0=("x0", "min"), y0=("y0", "min"), x1=("x1", "max"), y1=("y1", "max"), area_px=("area_px", "sum"),
                    n=("region_id", "size"), member_region_ids=("region_id", list), labels=("labels", "first"),
                    kind=("kind", "first")).reset_index()
        one = agg["n"] == 1
        if scope in ("label", "both"):
            grouped = agg[~one].assign(scope="label")
            grouped["target_id"] = [stable_id("label-group", *m) for m in grouped["member_region_ids"]]
            out.append(grouped)
        out.append(agg[one].assign(scope="instance", target_id=agg.loc[one, "member_region_ids"].str[0]))
        if scope in ("instance", "both"):
            multi = masks[masks.groupby(["image_id", "raw_label"])["region_id"].transform("size") > 1]
            out.append(multi.assign(scope="instance", target_id=multi["region_id"],
                                    member_region_ids=multi["region_id"].map(lambda x: [x])))
    return pd.concat([o[cols] for o in out], ignore_index=True)


class Eligibility:
    """Why a label set cannot become a question (cached per distinct combination), else ''."""

    def __init__(self, vocab: pd.DataFrame, pools: dict[PoolKey, list[str]], picker: TemplatePicker):
        self.vmap = {(r.dataset_id, r.raw_label): r for r in vocab.itertuples(index=False)}
        self.hierarchy = Hierarchy.from_vocab(vocab)
        self.pools, self.picker = pools, picker
        self._cache: dict[tuple, tuple] = {}

    def resolve(self, ds: DatasetRows, labels: tuple[str, ...], granularity: str, counting: bool = False) -> tuple:
        """(reason, entry, answers, pool_size, distractors available) for one label set."""
        key = (ds.dataset_id, labels, granularity_group(granularity), counting)
        if key not in self._cache:
            self._cache[key] = self._resolve(ds, labels, granularity, counting)
        return self._cache[key]

    def _resolve(self, ds: DatasetRows, labels: tuple[str, ...], granularity: str, counting: bool) -> tuple:
        entries = [self.vmap.get((ds.dataset_id, lab)) for lab in labels]
        if any(e is None or e.status == "unresolved" for e in entries):
            return "unresolved_label", None, [], None, 0
        if not counting and any(not e.task for e in entries):
            return "untagged_label", None, [], None, 0
        answers = sorted({e.canonical_label for e in entries})
        family = QUESTION_FAMILY.get(ds.modality, "other")
        if counting:
            entry = entries[0]._replace(task="Counting", semantic_type="count")
            ok = self.picker.available("Counting", "image", family)
            return ("" if ok else "no_template"), entry, answers, None, 0
        if len({e.task for e in entries}) > 1:
            return "mixed_tasks", None, answers, None, 0
        task = entries[0].task
        pool = self.pools.get(pool_key(ds.dataset_id, ds.modality, task, granularity), [])
        n = len(distractor_candidates(answers, set(answers), pool, self.hierarchy))
        if len(pool) < 2 or n == 0:
            return "pool_too_small", entries[0], answers, len(pool), n
        if len(answers) > 1 and len(LETTERS) - len(answers) < 1:
            return "too_many_answers", entries[0], answers, len(pool), n
        if not self.picker.available(task, granularity_group(granularity), family):
            return "no_template", entries[0], answers, len(pool), n
        return "", entries[0], answers, len(pool), n


def plural(label: str) -> str:
    return label if label.endswith("s") else label + "s"


def _slice_frame(slices: pd.DataFrame) -> pd.DataFrame:
    """Per image: display geometry and the diversity features (axis, relative position, pHash)."""
    s = slices.copy()
    s["depth"] = s.groupby(["sample_id", "axis"])["index"].transform("max") + 1
    s["position"] = np.where(s["depth"] <= 1, 0.5, s["index"] / np.maximum(s["depth"] - 1, 1))
    s["sx"] = s["display_width"] / s["width"]
    s["sy"] = s["display_height"] / s["height"]
    return s.set_index("image_id")


def dataset_candidates(ds: DatasetRows, elig: Eligibility, config: PipelineConfig, skipped: Counter) -> list[dict]:
    """Item rows of one dataset (twins as two rows sharing a unit id)."""
    seed, gates = config.seed, config.gates
    if ds.slices.empty or ds.regions.empty:
        return []
    sl = _slice_frame(ds.slices)
    dims = dict(zip(ds.samples["sample_id"], ds.samples["dim"]))
    first_region = ds.regions.drop_duplicates("image_id").set_index("image_id")
    rows: list[dict] = []

    def emit(unit_key: tuple, target: dict | None, image_id: str, granularities: tuple[str, ...], labels: tuple,
             resolved: tuple, count: int | None = None, count_label: str | None = None) -> None:
        reason, entry, answers, pool_size, n_avail = resolved
        if reason:
            skipped[reason] += len(granularities)
            return
        s = sl.loc[image_id]
        base = first_region.loc[image_id]
        dw, dh = int(s["display_width"]), int(s["display_height"])
        mark = {"mark_pixels": None, "mark_fraction": None, "mark_min_side": None, "mark_bbox": None,
                "border_only": False}
        if target is not None and target["kind"] != "image":
            bx = [target["x0"] * s["sx"], target["y0"] * s["sy"], target["x1"] * s["sx"], target["y1"] * s["sy"]]
            px = float(target["area_px"] * s["sx"] * s["sy"])
            band_x, band_y = max(4.0, gates.border_band_fraction * dw), max(4.0, gates.border_band_fraction * dh)
            mark = {"mark_pixels": px, "mark_fraction": px / (dw * dh), "mark_min_side": min(bx[2] - bx[0], bx[3] - bx[1]),
                    "mark_bbox": bx, "border_only": bool(bx[2] <= band_x or bx[0] >= dw - band_x
                                                         or bx[3] <= band_y or bx[1] >= dh - band_y)}
        unit_id = stable_id(seed, ds.dataset_id, *unit_key)
        task = entry.task
        original = f"{ds.task_type.upper()}_{int(dims.get(base['sample_id'], 2))}D"
        for gran in granularities:
            prompt_id = stable_id(*unit_key) if count is not None else stable_id(target["target_id"], gran)
            rows.append({
                "unit_id": unit_id, "item_id": stable_id(unit_id, prompt_id, gran), "prompt_id": prompt_id,
                "target_id": target["target_id"] if target is not None else None,
                "member_region_ids": list(target["member_region_ids"]) if target is not None else [],
                "image_id": image_id, "sample_id": base["sample_id"], "group_id": base["group_id"],
                "scope": target["scope"] if target is not None else "image", "granularity": gran,
                "labels": list(labels), "answers": answers if count is None else [str(count)],
                "answer_label": f"the number of {plural(count_label)}: {count}" if count is not None else ";".join(answers),
                "count": count, "count_label": count_label, "clinical_vqa_task": task,
                "department": entry.department, "semantic_type": entry.semantic_type, "modality": ds.modality,
                "gmai_modality": GMAI_MODALITY.get(ds.modality, ds.modality),
                "question_family": QUESTION_FAMILY.get(ds.modality, "other"), "original_task": original,
                "pool_size": pool_size, "distractors_available": n_avail, "axis": s["axis"],
                "slice_index": int(s["index"]), "position": float(s["position"]), "phash": s["phash"],
                "contrast": float(s["contrast"]), "image_width": dw, "image_height": dh, **mark,
                "dataset_id": ds.dataset_id, "source_path": base["source_path"],
                "pipeline_version": PIPELINE_VERSION, "seed": seed})

    for t in targets(ds.regions, config.render.scope).to_dict("records"):
        labels = tuple(t["labels"])
        grans = KIND_GRANULARITIES[t["kind"]]
        key = (stable_id("twin", t["target_id"]),) if t["kind"] == "mask" else (t["target_id"],)
        emit(key, t, t["image_id"], grans, labels, elig.resolve(ds, labels, grans[0]))
    if ds.task_type == "det" and config.questions.counting:
        boxes = ds.regions[ds.regions["kind"] == "box"]
        for (image_id, raw), n in boxes.groupby(["image_id", "raw_label"]).size().items():
            resolved = elig.resolve(ds, (raw,), "image", counting=True)
            canonical = resolved[1].canonical_label if resolved[1] is not None else raw
            emit(("count", image_id, raw), None, image_id, ("image",), (raw,), resolved, int(n), canonical)
    return rows


def build_candidates(datasets: list[DatasetRows], vocab: pd.DataFrame, templates: pd.DataFrame,
                     pools: dict[PoolKey, list[str]], config: PipelineConfig) -> CandidateSet:
    """Every candidate item of every dataset, sorted by item id (deterministic)."""
    elig = Eligibility(vocab, pools, TemplatePicker(templates))
    rows: list[dict] = []
    total: Counter = Counter()
    per_ds: dict[str, Counter] = {}
    for ds in sorted(datasets, key=lambda d: d.dataset_id):
        skipped: Counter = Counter()
        rows.extend(dataset_candidates(ds, elig, config, skipped))
        per_ds[ds.dataset_id] = skipped
        total.update(skipped)
    df = pd.DataFrame(rows, columns=CANDIDATES.names)
    df = df.sort_values("item_id", kind="stable").reset_index(drop=True)
    table = pa.Table.from_pandas(df, schema=CANDIDATES, preserve_index=False)
    return CandidateSet(table, total, per_ds)
