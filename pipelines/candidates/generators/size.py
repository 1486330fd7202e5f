"""Size comparison: which of two or three outlined structures is largest or smallest (only with a clear
margin), or how many times larger one is than the other (ratio bins). Areas are physical (mm²) where the
pixel spacing is known; the display has square pixels, so the ratio a reader sees is the same."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from pipelines.candidates.generators.bins import bin_of, bin_text
from pipelines.candidates.generators.spec import Spec
from pipelines.config import GeneratorSettings

TASK = "Size Comparison"


def _area(s: dict) -> float:
    return float(s["area_mm2"]) if pd.notna(s["area_mm2"]) else float(s["area_px"])


def plane_specs(plane: list[dict], rng: np.random.Generator, g: GeneratorSettings) -> list[Spec]:
    rows = list(plane)
    if len(rows) < 2:
        return []
    out: list[Spec] = []
    combos = [c for k in (2, 3) for c in itertools.combinations(range(len(rows)), k)]
    for i in rng.permutation(len(combos))[: g.tries_per_plane]:
        chosen = [rows[j] for j in combos[i]]
        areas = np.array([_area(r) for r in chosen])
        order = np.argsort(-areas, kind="stable")
        modes = ["largest", "smallest"] + (["ratio"] if len(chosen) == 2 else [])
        mode = modes[int(rng.integers(len(modes)))]
        colours = [str(c) for c in rng.permutation(list(g.palette))[: len(chosen)]]
        top, second, last, before_last = areas[order[0]], areas[order[1]], areas[order[-1]], areas[order[-2]]
        if mode == "largest" and top >= g.size_margin * second:
            key = int(order[0])
        elif mode == "smallest" and before_last >= g.size_margin * last:
            key = int(order[-1])
        elif mode == "ratio":
            b = bin_of(top / second, list(g.ratio_ladder), g.bin_margin)
            if b is None:
                continue
            big, small = int(order[0]), int(order[1])
            chosen, colours = [chosen[big], chosen[small]], [colours[big], colours[small]]
            text = bin_text(b, list(g.ratio_ladder), "times")
            out.append(Spec("size_ratio", TASK, chosen[0]["image_id"], chosen, colours, [text],
                            f"ratio {text}", chosen[0]["department"], chosen[0]["semantic_type"],
                            {"mode": "ratio", "ratio": round(float(top / second), 4), "bin": b,
                             "areas": [round(float(a), 3) for a in areas[[big, small]]],
                             "area_unit": "mm2" if pd.notna(chosen[0]["area_mm2"]) else "px"}))
            continue
        else:
            continue
        k = chosen[key]
        out.append(Spec("size_compare", TASK, k["image_id"], chosen, colours, [colours[key].capitalize()],
                        f"{mode}: {k['canonical_label']}", k["department"], k["semantic_type"],
                        {"mode": mode, "areas": [round(float(a), 3) for a in areas],
                         "area_unit": "mm2" if pd.notna(k["area_mm2"]) else "px"}))
        if len(out) >= g.per_plane:
            break
    return out[: g.per_plane]
