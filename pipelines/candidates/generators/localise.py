"""Localisation questions for any segmented or boxed structure, one-label datasets included: where is it?

* ``localisation``: three or four same-size boxes, lettered, are drawn on the image; one holds the structure, the
  others (decoys) lie on the image's content (the body, the field of view) and hold no part of any instance of the
  structure. "Which box contains the <structure>?" The true box is the structure's box grown by
  ``localise_pad`` on each side, so no box is drawn tight around an edge the others lack. The correct box's
  letter is placed round-robin like any key; its box is drawn with that letter, the decoys with the others.
* ``coarse_position``: in which quadrant (or half) of the image, as displayed, the structure lies, asked only when
  its box lies wholly inside that quadrant or half, at least ``coarse_margin`` of the side away from the midlines,
  and when it is the only instance of its label on the plane. Nothing is drawn.
* ``grounding``: the structure's box itself, as [x0, y0, x1, y1] in fractions of the image's width and height
  (scored by IoU >= 0.5); exported as its own config. Only for a structure that is the only instance of its label
  on the plane.

Everything here reads boxes, not pixels: the regions' boxes and the plane's content box recorded at describe time.
"""

from __future__ import annotations

import numpy as np

from pipelines.candidates.generators.spec import Spec
from pipelines.config import GeneratorSettings

TASK = "Localization"
GROUNDING_TASK = "Grounding"
PHOTOGRAPHIC = {"Endoscopy", "Dermoscopy", "Fundus Photography", "OCT"}  # round or vignetted fields of view
QUADRANTS = {(0, 0): "upper left", (1, 0): "upper right", (0, 1): "lower left", (1, 1): "lower right"}
HALVES = {("x", 0): "left half", ("x", 1): "right half", ("y", 0): "upper half", ("y", 1): "lower half"}


def _overlap(a, b, gap: float = 0.0) -> bool:
    return not (a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1])


def _inside_ellipse(box, area) -> bool:
    """All four corners of ``box`` inside the ellipse inscribed in ``area`` (a round field of view)."""
    cx, cy = (area[0] + area[2]) / 2, (area[1] + area[3]) / 2
    rx, ry = max((area[2] - area[0]) / 2, 1e-9), max((area[3] - area[1]) / 2, 1e-9)
    return all(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1.0 for x in (box[0], box[2]) for y in (box[1], box[3]))


def decoys(target: list[float], avoid: list[list[float]], area: list[float], round_field: bool,
           rng: np.random.Generator, want: int, gap: float, tries: int = 400) -> list[list[float]]:
    """Up to ``want`` boxes of the target's size inside ``area`` (and its inscribed ellipse for a round field of
    view), apart from the target, from every box in ``avoid`` and from each other by ``gap``."""
    w, h = target[2] - target[0], target[3] - target[1]
    if area[2] - area[0] < w or area[3] - area[1] < h:
        return []
    out: list[list[float]] = []
    for _ in range(tries):
        x0 = float(rng.uniform(area[0], area[2] - w))
        y0 = float(rng.uniform(area[1], area[3] - h))
        box = [round(x0, 2), round(y0, 2), round(x0 + w, 2), round(y0 + h, 2)]
        if round_field and not _inside_ellipse(box, area):
            continue
        if any(_overlap(box, o, gap) for o in [target, *avoid, *out]):
            continue
        out.append(box)
        if len(out) == want:
            break
    return out


def _padded(r: dict, pad: float, width: float, height: float, edge: float) -> list[float]:
    """The structure's box grown by ``pad`` of its size, kept ``edge`` inside the image (its ring must show)."""
    w, h = r["x1"] - r["x0"], r["y1"] - r["y0"]
    px, py = max(2.0, pad * w), max(2.0, pad * h)
    return [max(edge, r["x0"] - px), max(edge, r["y0"] - py), min(width - edge, r["x1"] + px),
            min(height - edge, r["y1"] + py)]


def _article(n: int) -> str:
    return "the" if n == 1 else "a"


def localisation_specs(plane: list[dict], geo: dict, modality: str, rng: np.random.Generator,
                       g: GeneratorSettings) -> list[Spec]:
    """Box questions for the visible tagged structures of one plane. ``plane``: one row per region (instance) with
    its canonical label and tags; ``geo``: the plane's width, height and content box."""
    width, height = float(geo["width"]), float(geo["height"])
    c = geo.get("content_bbox")
    area = [float(v) for v in c] if c is not None and len(c) == 4 else [0.0, 0.0, width, height]
    m = max(2.0, g.localise_margin * min(width, height))  # a box's ring and tag must stay on the image
    area = [max(area[0], 0.0) + m, max(area[1], 0.0) + m, min(area[2], width) - m, min(area[3], height) - m]
    gap = max(1.0, g.localise_gap * min(width, height))
    by_label: dict[str, list[dict]] = {}
    for r in plane:
        by_label.setdefault(r["canonical_label"], []).append(r)
    out: list[Spec] = []
    for label in [sorted(by_label)[i] for i in rng.permutation(len(by_label))]:
        inst = by_label[label]
        visible = [r for r in inst if r["visible"]]
        if not visible or any(r["faint"] for r in inst):
            continue  # a speck of the structure below the region floor could sit inside a decoy
        r = visible[int(rng.integers(len(visible)))]
        box = _padded(r, g.localise_pad, width, height, min(m, r["x0"], r["y0"], width - r["x1"], height - r["y1"]))
        if (box[2] - box[0]) * (box[3] - box[1]) > g.localise_max_area * width * height:
            continue  # boxes that large leave no room for decoys on the image
        avoid = [[o["x0"], o["y0"], o["x1"], o["y1"]] for o in inst if o is not r]
        want = int(rng.integers(2, g.localise_max_boxes))  # 2 or 3 decoys: 3 or 4 boxes
        found = decoys(box, avoid, area, modality in PHOTOGRAPHIC, rng, want, gap)
        if len(found) < 2:
            continue
        n = len(found) + 1
        out.append(Spec("localisation", TASK, r["image_id"], [r], [], ["Box A"], f"box of {label}", r["department"],
                        r["semantic_type"],
                        {"structure": label, "article": _article(len(inst)), "boxes": [box, *found], "n_boxes": n},
                        labels=[r["raw_label"]], drawn="boxes"))
        if len(out) >= g.per_plane:
            break
    return out


def _lone_visible(plane: list[dict], rng: np.random.Generator):
    """The plane's visible, not faint structures that are the only instance of their label, in a seeded order: the
    ones a question can name without saying which instance it means."""
    counts: dict[str, int] = {}
    for r in plane:
        counts[r["canonical_label"]] = counts.get(r["canonical_label"], 0) + 1
    for j in rng.permutation(len(plane)):
        r = plane[j]
        if counts[r["canonical_label"]] == 1 and r["visible"] and not r["faint"]:
            yield r


def coarse_specs(plane: list[dict], geo: dict, rng: np.random.Generator, g: GeneratorSettings) -> list[Spec]:
    """Quadrant (else half) questions for structures that are the only instance of their label on the plane."""
    width, height = float(geo["width"]), float(geo["height"])
    mx, my = g.coarse_margin * width, g.coarse_margin * height
    out: list[Spec] = []
    for r in _lone_visible(plane, rng):
        side_x = 0 if r["x1"] <= width / 2 - mx else 1 if r["x0"] >= width / 2 + mx else None
        side_y = 0 if r["y1"] <= height / 2 - my else 1 if r["y0"] >= height / 2 + my else None
        if side_x is not None and side_y is not None:
            key, options, kind = QUADRANTS[(side_x, side_y)], list(QUADRANTS.values()), "quadrant"
        elif side_x is not None:
            key, options, kind = HALVES[("x", side_x)], [HALVES[("x", 0)], HALVES[("x", 1)]], "half"
        elif side_y is not None:
            key, options, kind = HALVES[("y", side_y)], [HALVES[("y", 0)], HALVES[("y", 1)]], "half"
        else:
            continue
        label = r["canonical_label"]
        out.append(Spec("coarse_position", TASK, r["image_id"], [r], [], [key], f"{kind} of {label}: {key}",
                        r["department"], r["semantic_type"],
                        {"structure": label, "kind": kind, "options": options, "marked": False},
                        labels=[r["raw_label"]], balance_group=f"coarse:{kind}:{label}", drawn="none"))
        if len(out) >= g.per_plane:
            break
    return out


def _sizeable(r: dict, width: float, height: float, g: GeneratorSettings) -> bool:
    """A structure covering most of the image (a membrane network, a whole brain) has no location to ask about."""
    return (r["x1"] - r["x0"]) * (r["y1"] - r["y0"]) <= g.locate_max_area * width * height


def grounding_specs(plane: list[dict], geo: dict, rng: np.random.Generator, g: GeneratorSettings) -> list[Spec]:
    """The normalized box of structures that are the only instance of their label on the plane."""
    width, height = float(geo["width"]), float(geo["height"])
    out: list[Spec] = []
    for r in _lone_visible(plane, rng):
        if not _sizeable(r, width, height, g):
            continue
        box = [round(r["x0"] / width, 4), round(r["y0"] / height, 4), round(r["x1"] / width, 4),
               round(r["y1"] / height, 4)]
        label = r["canonical_label"]
        out.append(Spec("grounding", GROUNDING_TASK, r["image_id"], [r], [], [str(box)], f"box of {label}",
                        r["department"], r["semantic_type"], {"structure": label, "box": box, "marked": False},
                        labels=[r["raw_label"]], drawn="none"))
        if len(out) >= g.per_plane:
            break
    return out
