"""Run the enabled generators over one dataset's described rows: candidate rows (before ids and joins)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import numpy as np
import pandas as pd

from pipelines.candidates.generators import (
    instances,
    laterality,
    localise,
    measure,
    position,
    size,
)
from pipelines.candidates.generators.pieces import fact_jobs, merged, plane_facts
from pipelines.candidates.generators.spec import Spec
from pipelines.candidates.generators.structures import (
    plane_frame,
    sampled_planes,
    structures,
)
from pipelines.config import PipelineConfig
from pipelines.gates import readable_planes
from pipelines.ids import derived_rng
from pipelines.processes import run_beside

PLANE_GENERATORS = {"size_compare": size.plane_specs, "relative_position": position.plane_specs,
                    "laterality": laterality.plane_specs}


LOCALISE = {"localisation": localise.localisation_specs, "coarse_position": localise.coarse_specs,
            "grounding": localise.grounding_specs}


def _readable(slices: pd.DataFrame, config: PipelineConfig) -> pd.Series:
    return slices.loc[readable_planes(slices.rename(columns={"display_width": "image_width",
                                                             "display_height": "image_height"}), config.gates),
                      "image_id"]


def nested_inside(vocab: pd.DataFrame) -> set[str]:
    """Raw labels the label map nests inside another label of the dataset (`contains`)."""
    if "contains" not in vocab:
        return set()
    return {raw for inner in vocab["contains"] if inner is not None for raw in inner}


def without_nested(rows: list[dict], inner: set[str]) -> list[dict]:
    """A plane's structures minus those nested inside another structure drawn on the same plane."""
    return [r for r in rows if r["raw_label"] not in inner] if inner and len(rows) > 1 else rows


def inconspicuous(rows: pd.DataFrame, config: PipelineConfig) -> np.ndarray:
    """Findings (``gates.finding_types``: a tumour, a cell) on volume planes whose ring contrast-to-noise on the
    plane shown is under ``gates.min_finding_cnr``. Anatomy is found by where it lies; a finding only by seeing it,
    and a lesion drawn on the native slices can vanish in a reformatted or windowed plane. A 2D mask or box was
    drawn on the very image shown (no measure is stored, and none is needed)."""
    cnr = rows["ring_cnr"].to_numpy(float) if "ring_cnr" in rows else np.full(len(rows), np.nan)
    finding = rows["semantic_type"].isin(config.gates.finding_types).to_numpy()
    return finding & ~np.isnan(cnr) & (np.nan_to_num(cnr, nan=np.inf) < config.gates.min_finding_cnr)


def localised(regions: pd.DataFrame, slices: pd.DataFrame, vocab: pd.DataFrame, modality: str,
              config: PipelineConfig, exhaustive: frozenset[str] = frozenset(),
              partial: frozenset[str] = frozenset(), skipped: Counter | None = None) -> list[Spec]:
    """Localisation, coarse-position and grounding questions from the boxes of every tagged region on a seeded
    sample of readable planes: no stored mask is read. Only labels annotated wherever they appear: a segmentation
    mask unless its label map says the label is partial, a detection box only when the label map says exhaustive
    (an unboxed platelet could sit inside a decoy, or be "the other" platelet)."""
    g, seed = config.generators, config.seed
    wanted = [n for n in LOCALISE if n in g.enabled]
    kind, raw = regions["kind"], regions["raw_label"]
    marked = regions[((kind == "mask") & ~raw.isin(partial)) | ((kind == "box") & raw.isin(exhaustive))]
    if not wanted or marked.empty:
        return []
    v = vocab[vocab["status"].isin(["mesh", "no_mesh", "accepted"]) & vocab["department"].notna()
              & (vocab["department"] != "N/A")]
    rows = marked.merge(v[["raw_label", "canonical_label", "department", "semantic_type"]], on="raw_label")
    with_rows = sorted(set(rows["image_id"]) & set(_readable(slices, config)))
    if not with_rows:
        return []
    planes = plane_frame(slices).set_index("image_id")
    content = dict(zip(slices["image_id"], slices["content_bbox"])) if "content_bbox" in slices else {}
    faint = dict(zip(slices["image_id"], slices["faint_labels"])) if "faint_labels" in slices else {}
    bbox = np.array(rows["bbox"].tolist(), float).reshape(-1, 4)
    rows = rows.assign(x0=bbox[:, 0], y0=bbox[:, 1], x1=bbox[:, 2], y1=bbox[:, 3])
    geo = planes.loc[rows["image_id"]]
    disp = rows["area_px"].to_numpy(float) * geo["scale"].to_numpy() * geo["scale_y"].to_numpy()
    side = np.minimum((rows["x1"] - rows["x0"]).to_numpy() * geo["scale"].to_numpy(),
                      (rows["y1"] - rows["y0"]).to_numpy() * geo["scale_y"].to_numpy())
    area = (geo["display_width"] * geo["display_height"]).to_numpy(float)
    gt = config.gates
    hidden = inconspicuous(rows, config)
    if skipped is not None and hidden.any():
        skipped["finding_not_conspicuous"] += int(hidden.sum())
    rows["visible"] = ((disp >= gt.min_mark_pixels) & (disp >= gt.min_mark_fraction * area)
                       & (side >= gt.min_mark_side) & ~hidden)
    rows["faint"] = [raw in set(faint.get(i) if faint.get(i) is not None else ()) for i, raw in
                     zip(rows["image_id"], rows["raw_label"])]
    chosen = {name: sampled_planes(with_rows, seed, name, g.max_planes) for name in wanted}
    sampled = rows[rows["image_id"].isin(set().union(*chosen.values()))]  # as dicts only the rows of those planes
    by_plane: dict[str, list[dict]] = {}
    for rec in sampled.sort_values(["image_id", "region_id"]).to_dict("records"):
        by_plane.setdefault(rec["image_id"], []).append(rec)
    specs: list[Spec] = []
    for name in wanted:
        for image_id in chosen[name]:
            p = planes.loc[image_id]
            info = {"width": p["width"], "height": p["height"], "content_bbox": content.get(image_id)}
            rng = derived_rng(seed, name, image_id)
            if name == "localisation":
                specs += localise.localisation_specs(by_plane[image_id], info, modality, rng, g)
            else:
                specs += LOCALISE[name](by_plane[image_id], info, rng, g)
    return specs


def generated(regions: pd.DataFrame, slices: pd.DataFrame, samples: pd.DataFrame, vocab: pd.DataFrame,
              exhaustive: frozenset[str], config: PipelineConfig, skipped: Counter,
              rle_lookup: Callable[[list[str]], dict[str, str]] | None = None, modality: str = "",
              partial: frozenset[str] = frozenset()) -> pd.DataFrame:
    """One row per generated unit (Spec.row columns), deterministic for a seed. Each generator looks at a seeded
    sample of at most ``generators.max_planes`` planes that pass the image gates; ``rle_lookup`` fetches the stored masks of those planes
    only, so the cost of this step is bounded per dataset, not by its size."""
    g, seed = config.generators, config.seed

    def local() -> list[Spec]:
        return localised(regions, slices, vocab, modality, config, exhaustive, partial, skipped)
    masks = regions[regions["kind"] == "mask"]
    if masks.empty or not (set(g.enabled) - set(LOCALISE)) or rle_lookup is None:
        return pd.DataFrame([s.row() for s in local()])
    readable = _readable(slices, config)
    with_masks = sorted(set(masks["image_id"].tolist()) & set(readable.tolist()))
    chosen = {name: sampled_planes(with_masks, seed, name, g.max_planes) for name in g.enabled if name not in LOCALISE}
    if "instance_count" in chosen:  # a count can be 0: planes without any mask are candidates too
        chosen["instance_count"] = sampled_planes(readable, seed, "instance_count", g.max_planes)
    needed = sorted(set().union(*chosen.values()))
    sub = masks[masks["image_id"].isin(needed)]
    planes = plane_frame(slices)
    canonical = dict(zip(vocab["raw_label"], vocab["canonical_label"]))
    jobs = fact_jobs(sub, planes, rle_lookup(sorted(sub["region_id"])), canonical, exhaustive,
                     set(chosen.get("measurement", [])), config, g.workers)
    # the localisation questions are made here while the planes' facts are found in the workers
    specs, found = run_beside(local, [(plane_facts, job) for job in jobs], g.workers, spread=g.workers)
    failed = [f for f in found if isinstance(f, BaseException)]
    if failed:
        raise failed[0]
    facts = merged(found)
    st = structures(sub, planes, vocab, config, facts.pieces)
    by_plane: dict[str, list[dict]] = {}
    for rec in st.to_dict("records"):  # structure rows as dicts, grouped once (sorted by image id)
        by_plane.setdefault(rec["image_id"], []).append(rec)
    inner = nested_inside(vocab)
    for name in chosen:
        for image_id in (i for i in chosen[name] if i in by_plane):
            rng = derived_rng(seed, name, image_id)
            if name == "measurement":
                specs += measure.plane_specs(by_plane[image_id], rng, g, facts.feret)
            elif name in PLANE_GENERATORS:  # two marks never one inside the other (a tumour core and its tumour)
                specs += PLANE_GENERATORS[name](without_nested(by_plane[image_id], inner), rng, g)
    if "instance_count" in g.enabled and exhaustive:
        table = instances.count_table(facts, regions, slices, planes, vocab, exhaustive, chosen["instance_count"],
                                      config, skipped)
        dims = dict(zip(samples["sample_id"], samples["dim"]))
        kind = {i: ("volume" if dims.get(s, 2) == 3 else "flat")
                for i, s in zip(slices["image_id"].tolist(), slices["sample_id"].tolist())}
        for s in instances.specs(table):
            s.params["dim_kind"] = kind.get(s.image_id, "flat")
            specs.append(s)
    return pd.DataFrame([s.row() for s in specs])
