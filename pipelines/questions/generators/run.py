"""Run the enabled generators over one dataset's described rows: candidate rows (before ids and joins)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pandas as pd

from pipelines.config import PipelineConfig
from pipelines.gates import readable_planes
from pipelines.ids import derived_rng
from pipelines.questions.generators import instances, laterality, measure, position, size
from pipelines.questions.generators.pieces import plane_facts
from pipelines.questions.generators.spec import Spec
from pipelines.questions.generators.structures import plane_frame, sampled_planes, structures

PLANE_GENERATORS = {"size_compare": size.plane_specs, "relative_position": position.plane_specs,
                    "laterality": laterality.plane_specs}


def generated(regions: pd.DataFrame, slices: pd.DataFrame, samples: pd.DataFrame, vocab: pd.DataFrame,
              exhaustive: frozenset[str], config: PipelineConfig, skipped: Counter,
              rle_lookup: Callable[[list[str]], dict[str, str]] | None = None) -> pd.DataFrame:
    """One row per generated unit (Spec.row columns), deterministic for a seed. Each generator looks at a seeded
    sample of at most ``generators.max_planes`` planes that pass the image gates; ``rle_lookup`` fetches the stored masks of those planes
    only, so the cost of this step is bounded per dataset, not by its size."""
    g, seed = config.generators, config.seed
    masks = regions[regions["kind"] == "mask"]
    if masks.empty or not g.enabled or rle_lookup is None:
        return pd.DataFrame()
    readable = slices.loc[readable_planes(slices.rename(columns={"display_width": "image_width",
                                                                   "display_height": "image_height"}),
                                          config.gates), "image_id"]
    with_masks = sorted(set(masks["image_id"].tolist()) & set(readable.tolist()))
    chosen = {name: sampled_planes(with_masks, seed, name, g.max_planes) for name in g.enabled}
    if "instance_count" in chosen:  # a count can be 0: planes without any mask are candidates too
        chosen["instance_count"] = sampled_planes(readable, seed, "instance_count", g.max_planes)
    needed = sorted(set().union(*chosen.values()))
    sub = masks[masks["image_id"].isin(needed)]
    planes = plane_frame(slices)
    canonical = dict(zip(vocab["raw_label"], vocab["canonical_label"]))
    facts = plane_facts(sub, planes, rle_lookup(sorted(sub["region_id"])), canonical, exhaustive,
                        set(chosen.get("measurement", [])), config)
    st = structures(sub, planes, vocab, config, facts.pieces)
    by_plane: dict[str, list[dict]] = {}
    for rec in st.to_dict("records"):  # structure rows as dicts, grouped once (sorted by image id)
        by_plane.setdefault(rec["image_id"], []).append(rec)
    specs: list[Spec] = []
    for name in g.enabled:
        for image_id in (i for i in chosen[name] if i in by_plane):
            rng = derived_rng(seed, name, image_id)
            if name == "measurement":
                specs += measure.plane_specs(by_plane[image_id], rng, g, facts.feret)
            elif name in PLANE_GENERATORS:
                specs += PLANE_GENERATORS[name](by_plane[image_id], rng, g)
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
