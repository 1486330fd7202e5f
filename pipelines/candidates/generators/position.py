"""Relative position: where one outlined structure lies relative to another, in one of eight directions
from the centroids. Only pairs whose boxes do not overlap, whose centroids are far enough apart and whose
direction lies well inside one 45° sector. Directions are the patient's when the plane's orientation is
recorded (and the stem says so), else the image's as displayed. The options are the four straight or the four
diagonal directions (the key's kind), and selection keeps the four equally often per plane orientation, so
neither a frequent direction nor the mix of option kinds gives the key away."""

from __future__ import annotations

import itertools
import math

import numpy as np

from pipelines.candidates.generators.spec import Spec
from pipelines.config import GeneratorSettings
from pipelines.standardize.planes import OPPOSITE, SIDE_NAME, display_directions

TASK = "Relative Position"
IMAGE_WORDS = {(1, 0): "right", (-1, 0): "left", (0, 1): "up", (0, -1): "down"}
# sector k covers angles (k*45 ± 22.5)°, counter-clockwise from the viewer's right, y pointing up
SECTORS = [(1, 0), (1, 1), (0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1)]


def _word(letter: str) -> str:
    return f"patient's {SIDE_NAME[letter]}" if letter in "LR" else SIDE_NAME[letter]


def direction_names(orientation: str | None, axis: str | None) -> tuple[list[str], str]:
    """The eight option texts (sector order) and the frame ('patient' or 'image')."""
    dirs = display_directions(orientation, axis)
    if dirs is None:
        h = {1: "right", -1: "left"}
        v = {1: "above", -1: "below"}
        names = []
        for dx, dy in SECTORS:
            if dy == 0:
                names.append(f"to the {h[dx]}")
            elif dx == 0:
                names.append(v[dy])
            else:
                names.append(f"{v[dy]} and to the {h[dx]}")
        return [n[0].upper() + n[1:] for n in names], "image"
    right, up = dirs[0], OPPOSITE[dirs[1]]  # image +x grows toward dirs[0]; image up is -rows
    letters = {1: right, -1: OPPOSITE[right]}, {1: up, -1: OPPOSITE[up]}
    names = []
    for dx, dy in SECTORS:
        parts = ([_word(letters[1][dy])] if dy else []) + ([_word(letters[0][dx])] if dx else [])
        text = " and ".join(parts)
        names.append(text[0].upper() + text[1:])
    return names, "patient"


def _apart(a: dict, b: dict) -> bool:
    return a["x1"] <= b["x0"] or b["x1"] <= a["x0"] or a["y1"] <= b["y0"] or b["y1"] <= a["y0"]


def plane_specs(plane: list[dict], rng: np.random.Generator, g: GeneratorSettings) -> list[Spec]:
    rows = list(plane)
    pairs = list(itertools.permutations(range(len(rows)), 2))
    out: list[Spec] = []
    for i in rng.permutation(len(pairs))[: g.tries_per_plane]:
        a, b = rows[pairs[i][0]], rows[pairs[i][1]]
        if not _apart(a, b):
            continue
        dx, dy = (a["cx"] - b["cx"]) * a["scale"], -(a["cy"] - b["cy"]) * a["scale_y"]  # display px, y up
        diag = math.hypot(a["display_width"], a["display_height"])
        if math.hypot(dx, dy) < g.min_distance_fraction * diag:
            continue
        angle = math.degrees(math.atan2(dy, dx)) % 360
        sector = int(round(angle / 45)) % 8
        off = abs((angle - sector * 45 + 180) % 360 - 180)
        if off > 22.5 - g.direction_margin_deg:
            continue
        names, frame = direction_names(a["orientation"], a["axis"])
        colours = [str(c) for c in rng.permutation(list(g.palette))[:2]]
        out.append(Spec("relative_position", TASK, a["image_id"], [a, b], colours, [names[sector]], names[sector],
                        a["department"], a["semantic_type"],
                        {"frame": frame, "angle_deg": round(angle, 2), "sector": sector, "directions": names,
                         "offset_display_px": [round(dx, 2), round(dy, 2)]},
                        balance_group=f"position:{frame}:{a['axis']}:{sector % 2}"))
        if len(out) >= g.per_plane:
            break
    return out
