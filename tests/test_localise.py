"""Localisation, coarse-position and grounding questions: exactly one box holds the structure, every box lies on
the image's content, the quadrant is unambiguous, the grounding key is the structure's box in fractions."""

from __future__ import annotations

import numpy as np
import pytest
import pandas as pd

from pipelines.config import GeneratorSettings
from pipelines.candidates.generators import localise
from pipelines.render.boxes import box_letters, draw_lettered_boxes

G = GeneratorSettings()


def row(label: str, box, region: str, image: str = "p") -> dict:
    x0, y0, x1, y1 = box
    return {"region_id": region, "image_id": image, "raw_label": label, "canonical_label": label,
            "x0": x0, "y0": y0, "x1": x1, "y1": y1, "area_px": (x1 - x0) * (y1 - y0), "visible": True,
            "faint": False, "department": "Hematology", "semantic_type": "cell"}


def overlaps(a, b) -> bool:
    return not (a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1])


def test_decoys_hold_no_instance_of_the_structure_and_stay_on_the_content():
    plane = [row("nucleus", (40, 40, 50, 50), "n1"), row("nucleus", (120, 30, 132, 44), "n2"),
             row("nucleus", (60, 150, 70, 160), "n3"), row("red blood cell", (100, 100, 140, 140), "r1")]
    content = [20.0, 10.0, 180.0, 190.0]
    geo = {"width": 200, "height": 200, "content_bbox": content}
    seen = 0
    for seed in range(30):
        for spec in localise.localisation_specs(plane, geo, "Histopathology", np.random.default_rng(seed), G):
            boxes = spec.params["boxes"]
            assert 3 <= len(boxes) <= 4 and spec.params["n_boxes"] == len(boxes)
            target = spec.marks[0]
            tbox = [target["x0"], target["y0"], target["x1"], target["y1"]]
            assert boxes[0][0] <= tbox[0] and boxes[0][2] >= tbox[2]  # the true box holds its structure
            same = [[r["x0"], r["y0"], r["x1"], r["y1"]] for r in plane if r["canonical_label"] == spec.params["structure"]]
            for d in boxes[1:]:
                assert not any(overlaps(d, s) for s in same)  # no decoy holds any instance of the structure
                assert content[0] <= d[0] and d[2] <= content[2] and content[1] <= d[1] and d[3] <= content[3]
                assert abs((d[2] - d[0]) - (boxes[0][2] - boxes[0][0])) < 1e-6  # same size as the true box
            for i in range(len(boxes)):
                for j in range(i + 1, len(boxes)):
                    assert not overlaps(boxes[i], boxes[j])
            assert spec.params["article"] == ("a" if spec.params["structure"] == "nucleus" else "the")
            seen += 1
    assert seen >= 20


def test_a_structure_too_large_for_decoys_is_not_asked():
    plane = [row("polyp", (10, 10, 150, 150), "p1")]  # half the image
    geo = {"width": 200, "height": 200, "content_bbox": [0, 0, 200, 200]}
    assert localise.localisation_specs(plane, geo, "Endoscopy", np.random.default_rng(0), G) == []


def test_round_fields_keep_decoys_inside_the_inscribed_ellipse():
    assert localise._inside_ellipse([90, 90, 110, 110], [0, 0, 200, 200])
    assert not localise._inside_ellipse([0, 0, 20, 20], [0, 0, 200, 200])  # a fundus image's black corner


def test_quadrant_only_when_unambiguous():
    geo = {"width": 100, "height": 100}
    inside = localise.coarse_specs([row("liver", (10, 10, 40, 40), "l")], geo, np.random.default_rng(0), G)
    assert [s.answers[0] for s in inside] == ["upper left"]
    halves = localise.coarse_specs([row("liver", (60, 10, 90, 80), "l")], geo, np.random.default_rng(0), G)
    assert [s.answers[0] for s in halves] == ["right half"] and halves[0].params["options"] == ["left half",
                                                                                               "right half"]
    across = localise.coarse_specs([row("liver", (30, 30, 70, 70), "l")], geo, np.random.default_rng(0), G)
    assert across == []
    two = localise.coarse_specs([row("kidney", (10, 10, 20, 20), "a"), row("kidney", (70, 70, 90, 90), "b")], geo,
                                np.random.default_rng(0), G)
    assert two == []  # "the kidney" would be ambiguous


def test_grounding_key_is_the_box_in_fractions():
    specs = localise.grounding_specs([row("liver", (10, 20, 40, 60), "l")], {"width": 200, "height": 100},
                                     np.random.default_rng(0), G)
    assert specs[0].params["box"] == [0.05, 0.2, 0.2, 0.6]  # 10/200, 20/100, 40/200, 60/100
    huge = localise.grounding_specs([row("membrane", (0, 0, 200, 100), "m")], {"width": 200, "height": 100},
                                    np.random.default_rng(0), G)
    assert huge == []


def test_drawn_letters_follow_the_key():
    assert box_letters("C", 4) == ["C", "A", "B", "D"]
    img = np.full((100, 100, 3), 128, np.uint8)
    out, params = draw_lettered_boxes(img, [[10, 20, 30, 40], [60, 60, 80, 80], [60, 10, 80, 30]],
                                      ["B", "A", "C"], __import__("pipelines.config", fromlist=["RenderSettings"]).RenderSettings())
    assert params["letters"] == ["B", "A", "C"]
    ring = np.all(out == params["color"], axis=2)
    assert ring[20:40, 9].all() and ring[19, 10:30].all()  # the ring sits just outside the first box (1 px)
    assert params["contrast"] >= 3  # against the grey surroundings


def test_partial_labels_are_not_localised():
    from pipelines.config import PipelineConfig
    from pipelines.candidates.generators.run import localised
    regions = pd.DataFrame([{"region_id": f"b{i}", "image_id": "p", "kind": "box", "raw_label": lab,
                             "bbox": [10.0 + 40 * i, 10.0, 30.0 + 40 * i, 30.0], "area_px": 400}
                            for i, lab in enumerate(["WBC", "Platelets"])])
    slices = pd.DataFrame([{"image_id": "p", "sample_id": "s", "axis": "2d", "index": 0, "orientation": "",
                            "spacing": [1.0, 1.0], "width": 200, "height": 200, "display_width": 200,
                            "display_height": 200, "contrast": 50.0, "content_bbox": [0, 0, 200, 200],
                            "faint_labels": [], "intensity_params": "{}"}])
    vocab = pd.DataFrame([{"raw_label": lab, "canonical_label": lab.lower(), "status": "mesh",
                           "department": "Hematology", "semantic_type": "cell"} for lab in ["WBC", "Platelets"]])
    specs = localised(regions, slices, vocab, "Microscopy", PipelineConfig(), frozenset({"WBC"}),
                      frozenset({"Platelets"}))
    assert specs and {s.params["structure"] for s in specs} == {"wbc"}


def test_lettered_box_colour_contrast_is_what_the_reader_sees():
    """The recorded contrast is re-measured on the drawn image: the ring's colour against the pixels within one
    ring width of the visible rings, the letter tags left out (WCAG luminance computed here by hand)."""
    import cv2 as _cv2

    from pipelines.config import RenderSettings
    from pipelines.render.boxes import draw_lettered_boxes
    rng = np.random.default_rng(3)
    img = np.clip(rng.normal(120, 40, (96, 128, 3)), 0, 254).astype(np.uint8)  # no pixel is pure 255
    out, p = draw_lettered_boxes(img, [[10, 30, 30, 50], [60, 5, 80, 25], [90, 60, 115, 85]], ["B", "A", "C"],
                                 RenderSettings())
    c = np.array(p["color"])
    ring = (out == c).all(-1)
    tags = np.zeros(ring.shape, bool)
    for x0, y0, x1, y1 in p["tags"]:
        tags[y0:y1, x0:x1] = True
    t = p["thickness"]
    band = (_cv2.dilate(ring.astype(np.uint8), np.ones((2 * t + 1, 2 * t + 1), np.uint8)) > 0) & ~ring & ~tags

    def lum(rgb):
        v = np.asarray(rgb, float) / 255.0
        v = np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)
        return 0.2126 * v[..., 0] + 0.7152 * v[..., 1] + 0.0722 * v[..., 2]
    a, b = float(lum(c)), float(lum(out[band]).mean())
    assert (max(a, b) + 0.05) / (min(a, b) + 0.05) == pytest.approx(p["contrast"], abs=1e-3)


def test_ring_contrast_by_hand():
    """A 4 x 4 square of grey 30 on a 10/20 checkerboard: the 3-px band around it (10 x 10 - 4 x 4 = 84 pixels)
    holds 42 of each, mean 15 and standard deviation 5, so the ratio is |30 - 15| / (5 + 1) = 2.5."""
    from pipelines.standardize.regions import ring_cnr
    yy, xx = np.mgrid[:20, :20]
    shown = np.where((yy + xx) % 2 == 0, 10, 20).astype(np.uint8)
    inst = np.zeros((20, 20), np.int32)
    inst[8:12, 8:12] = 7
    shown[8:12, 8:12] = 30
    inst[0:2, 0:2] = 3  # another instance outside the band changes nothing
    assert ring_cnr(shown, inst, 7, [8.0, 8.0, 12.0, 12.0]) == 2.5
    shown[8:12, 8:12] = 15  # the band's own mean: nothing stands out
    assert ring_cnr(shown, inst, 7, [8.0, 8.0, 12.0, 12.0]) == 0.0
    whole = np.ones((6, 6), np.int32)  # a structure that fills the plane has no surroundings
    assert ring_cnr(np.zeros((6, 6), np.uint8), whole, 1, [0.0, 0.0, 6.0, 6.0]) == 0.0


def test_ring_contrast_matches_a_plain_rederivation():
    """On random planes and blobs (int32 and uint16 ids, blobs touching the border), the ratio equals one derived
    with scipy's binary dilation (7 x 7: a chessboard reach of 3 px) and numpy's mean and deviation over the whole
    plane, not the box."""
    from scipy import ndimage

    from pipelines.standardize.regions import ring_cnr
    rng = np.random.default_rng(5)
    checked = 0
    for k in range(120):
        h, w = (int(v) for v in rng.integers(12, 90, 2))
        shown = rng.integers(0, 256, (h, w)).astype(np.uint8) if k % 4 else np.full((h, w), 77, np.uint8)
        inst = np.zeros((h, w), np.int32 if k % 2 else np.uint16)
        yy, xx = np.ogrid[:h, :w]
        for i in range(1, 4):
            cy, cx, r = int(rng.integers(0, h)), int(rng.integers(0, w)), int(rng.integers(1, 1 + min(h, w) // 3))
            inst[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = i
        for i, box in enumerate(ndimage.find_objects(inst.astype(np.int32)), 1):
            if box is None:
                continue
            inside = inst == i
            band = ndimage.binary_dilation(inside, np.ones((7, 7), bool)) & ~inside
            want = 0.0 if not band.any() else abs(shown[inside].astype(float).mean() - shown[band].mean()) / (
                shown[band].astype(float).std() + 1.0)
            got = ring_cnr(shown, inst, i, [float(box[1].start), float(box[0].start), float(box[1].stop),
                                            float(box[0].stop)])
            assert got == pytest.approx(want, abs=5e-4)
            checked += 1
    assert checked > 200


def test_a_faint_finding_on_a_volume_plane_is_not_localised():
    """A tumour whose ring contrast is under the floor is neither boxed, placed in a quadrant nor grounded; the
    same tumour with a clear contrast is; an organ at any contrast is (anatomy is found by where it lies); a 2D
    mask (no measure) is; every hidden region is counted as a skip."""
    from collections import Counter

    from pipelines.config import PipelineConfig
    from pipelines.candidates.generators.run import inconspicuous, localised
    cfg = PipelineConfig()
    frame = pd.DataFrame({"semantic_type": ["lesion", "lesion", "organ", "cell", "lesion", "lesion"],
                          "ring_cnr": [1.0, None, 0.2, 1.49, 1.5, 3.0]})
    assert inconspicuous(frame, cfg).tolist() == [True, False, False, True, False, False]

    def specs_for(cnr: float, semantic: str) -> tuple[list, Counter]:
        regions = pd.DataFrame([{"region_id": "r", "image_id": "p", "kind": "mask", "raw_label": "tumor",
                                 "bbox": [20.0, 20.0, 60.0, 60.0], "area_px": 1600, "ring_cnr": cnr}])
        slices = pd.DataFrame([{"image_id": "p", "sample_id": "s", "axis": "z", "index": 0, "orientation": "",
                                "spacing": [1.0, 1.0], "width": 200, "height": 200, "display_width": 200,
                                "display_height": 200, "contrast": 50.0, "content_bbox": [0, 0, 200, 200],
                                "faint_labels": [], "intensity_params": "{}"}])
        vocab = pd.DataFrame([{"raw_label": "tumor", "canonical_label": "tumor", "status": "mesh",
                               "department": "Oncology", "semantic_type": semantic}])
        skipped: Counter = Counter()
        return localised(regions, slices, vocab, "MRI", cfg, skipped=skipped), skipped

    hidden, why = specs_for(0.7, "lesion")
    assert hidden == [] and why["finding_not_conspicuous"] == 1
    shown, why = specs_for(2.0, "lesion")
    assert {s.generator for s in shown} == {"localisation", "coarse_position", "grounding"} and not why
    organ, _ = specs_for(0.2, "organ")
    assert {s.generator for s in organ} == {"localisation", "coarse_position", "grounding"}
