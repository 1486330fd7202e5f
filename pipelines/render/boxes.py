"""Lettered boxes for localisation questions: every box drawn alike, each with its letter in a tag a reader can
read at any image size, so nothing but the image content tells the right box from the decoys."""

from __future__ import annotations

import cv2
import numpy as np

from pipelines.config import RenderSettings
from pipelines.render.draw import (
    background,
    box_ring,
    grow,
    paint,
    pick_colour,
    thickness,
)

FONT = cv2.FONT_HERSHEY_SIMPLEX


def box_letters(answer: str, n: int) -> list[str]:
    """The letter drawn on each box: the first box (the true one) carries the key's letter, the decoys the others
    in order."""
    letters = "ABCDE"[:n]
    return [answer] + [c for c in letters if c != answer]


def _tag_box(img_shape, text: str, box: list[float], t: int, taken: list[tuple]) -> tuple[tuple, float, int]:
    """Where the letter's tag goes: the first of above-left, below-left, above-right, below-right and inside the
    top-left corner that stays on the image and clear of every other box and tag (else the least crowded one)."""
    h, w = img_shape[:2]
    scale = max(0.35, min(h, w) / 500.0)
    weight = max(1, int(round(scale * 2)))
    (tw, th), base = cv2.getTextSize(text, FONT, scale, weight)
    pad = max(1, t)
    bw, bh = tw + 2 * pad, th + base + 2 * pad
    x0, y0, x1, y1 = box[0] - t, box[1] - t, box[2] + t, box[3] + t
    spots = [(x0, y0 - bh), (x0, y1), (x1 - bw, y0 - bh), (x1 - bw, y1), (x0 + t, y0 + t)]
    best, best_hits = None, None
    for sx, sy in spots:
        sx, sy = int(np.clip(sx, 0, max(0, w - bw))), int(np.clip(sy, 0, max(0, h - bh)))
        rect = (sx, sy, sx + bw, sy + bh)
        hits = sum(not (rect[2] <= o[0] or o[2] <= rect[0] or rect[3] <= o[1] or o[3] <= rect[1]) for o in taken)
        if best_hits is None or hits < best_hits:
            best, best_hits = rect, hits
        if hits == 0:
            break
    return best, scale, weight


def _tag(img: np.ndarray, text: str, rect: tuple, scale: float, weight: int) -> np.ndarray:
    """The letter in white on black inside ``rect``."""
    out = img.copy()
    cv2.rectangle(out, (rect[0], rect[1]), (rect[2] - 1, rect[3] - 1), (0, 0, 0), thickness=-1)
    (_, th), base = cv2.getTextSize(text, FONT, scale, weight)
    pad = (rect[3] - rect[1] - th - base) // 2
    cv2.putText(out, text, (rect[0] + pad, rect[1] + pad + th), FONT, scale, (255, 255, 255), weight, cv2.LINE_AA)
    return out


def draw_lettered_boxes(rgb: np.ndarray, boxes: list[list[float]], letters: list[str], s: RenderSettings
                        ) -> tuple[np.ndarray, dict]:
    """The image with each display box drawn as an opaque ring just outside it and tagged with its letter. The tags
    are placed first (where they go depends on the boxes alone), so the one colour of the rings is chosen against
    what a reader sees beside them: the pixels around the visible rings, tags left out."""
    h, w = rgb.shape[:2]
    t = thickness(w, h, s)
    rings = [box_ring((h, w), box, t) for box in boxes]
    drawn = np.logical_or.reduce(rings)
    taken = [(b[0] - t, b[1] - t, b[2] + t, b[3] + t) for b in boxes]
    placed = []
    for i, (box, letter) in enumerate(zip(boxes, letters)):
        rect, scale, weight = _tag_box(rgb.shape, letter, box, t, taken[:i] + taken[i + 1:])
        taken.append(rect)
        placed.append((letter, rect, scale, weight))
    tagged = np.zeros((h, w), bool)
    for _, (x0, y0, x1, y1), _, _ in placed:
        tagged[y0:y1, x0:x1] = True
    bg = background(rgb, grow(drawn & ~tagged, t) & ~drawn & ~tagged)
    name, color, ratio = pick_colour(bg, s)
    out = rgb
    for ring in rings:
        out = paint(out, ring, color)
    for letter, rect, scale, weight in placed:
        out = _tag(out, letter, rect, scale, weight)
    return out, {"color": list(color), "color_name": name, "contrast": round(ratio, 3), "thickness": t,
                 "letters": letters, "tags": [[int(v) for v in rect] for _, rect, _, _ in placed],
                 "boxes": [[round(float(v), 2) for v in b] for b in boxes]}
