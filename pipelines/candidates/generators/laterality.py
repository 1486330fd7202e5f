"""Laterality: on which side of the patient an outlined lateralized structure lies (kidney_left, rib_right_7).
Only planes whose columns run along the patient's left-right axis (axial, coronal) with a recorded
orientation; the stem states the display convention. Mirrored copies with the swapped key are added for the
selected items (flip-consistency pairs, linked by variant_of)."""

from __future__ import annotations

import numpy as np

from pipelines.candidates.generators.spec import Spec
from pipelines.config import GeneratorSettings
from pipelines.standardize.planes import display_directions

TASK = "Laterality"


def plane_specs(plane: list[dict], rng: np.random.Generator, g: GeneratorSettings) -> list[Spec]:
    rows = [r for r in plane if r["side"] in ("left", "right")]
    if not rows:
        return []
    dirs = display_directions(rows[0]["orientation"], rows[0]["axis"])
    if dirs is None or dirs[0] not in "LR":
        return []
    out = []
    for j in rng.permutation(len(rows))[: g.per_plane]:
        r = rows[j]
        colour = str(rng.permutation(list(g.palette))[0])
        out.append(Spec("laterality", TASK, r["image_id"], [r], [colour], [r["side"].capitalize()],
                        f"patient's {r['side']}", r["department"], r["semantic_type"],
                        {"side": r["side"], "viewer_left_is": "patient's right" if dirs[0] == "L" else "patient's left",
                         "mirrored": False}))
    return out
