"""The 2D sets registered from the documentation alone (PH2 dermoscopy lesions and diagnoses, STARE fundus
vessels, Data Science Bowl 2018 nuclei, the ISBI EM stack with its documented pixel size), read back from the
../shared build: what was ingested and described is checked against the source files and their SOURCE.txt facts
(numpy on the mask files, not the pipeline's readers); no exported item of an image of unknown pixel size states
a unit; and every mark in the exported images contrasts with what surrounds it (WCAG ratio >= 3)."""

from __future__ import annotations

import io
import json
import re

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.conftest import SHARED, exported_rows, needs_shared

pytestmark = [needs_shared, pytest.mark.slow]
NEW = {"ph2_lesion_seg": 4, "ph2_diagnosis": 4, "stare_vessels": 3, "dsb2018_nuclei": 5, "isbi2012_em": 30}
UNIT = re.compile(r"\d\s*(?:mm|cm|µm|um|nm)\b|mm²|cm²|µm²", re.IGNORECASE)


def table(cfg, name: str, ds: str) -> pd.DataFrame:
    return pd.read_parquet(cfg.data_root / "tables" / name / f"{ds}.parquet")


def test_new_datasets_ingest_and_describe_as_their_sources_say(shared_build):
    cfg = shared_build
    for ds, n in NEW.items():
        samples = table(cfg, "raw_samples", ds)
        assert len(samples) == n, ds
        for stage in ("ingest", "standardize"):
            q = cfg.data_root / "tables" / "quarantine" / stage / f"{ds}.parquet"
            assert not q.exists() or pd.read_parquet(q).empty, (ds, stage)
        expected = "registry" if ds == "isbi2012_em" else "unknown"
        assert (samples["spacing_source"] == expected).all() and (table(cfg, "slices", ds)["spacing_source"] == expected).all()
    isbi = table(cfg, "slices", "isbi2012_em")
    assert all(list(s) == pytest.approx([4e-6, 4e-6]) for s in isbi["spacing"])  # 4 nm in mm

    # DSB 2018: one region per mask file (touching nuclei stay apart), as counts.csv lists them
    counts = pd.read_csv(SHARED / "dsb2018_he_nuclei_seg" / "counts.csv").set_index("image_id")["n_nuclei"]
    regions = table(cfg, "regions", "dsb2018_nuclei")
    per_image = regions.groupby("source_path").size()
    for path, n in per_image.items():
        files = len(list((SHARED / "dsb2018_he_nuclei_seg" / "masks" / path.split("/")[-1][:-4]).glob("*.png")))
        assert files == counts[path.split("/")[-1][:-4]]
        assert n >= files - 1 and n <= files + 1  # a 2-piece mask may add a piece, a sub-floor speck drop one
    assert per_image.sum() == counts.sum()

    # PH2 lesions and STARE vessels (observer ah): foreground share of each image equals the mask file's
    for ds, folder, name in (("ph2_lesion_seg", "masks", "{}_lesion.bmp"), ("stare_vessels", "labels_ah", "{}.ah.ppm")):
        regions = table(cfg, "regions", ds)
        root = SHARED / ("ph2_dermoscopy_lesion_seg" if ds.startswith("ph2") else "stare_fundus_vessel_seg")
        for path, pct in regions.groupby("source_path")["area_pct"].sum().items():
            m = np.asarray(Image.open(root / folder / name.format(path.split("/")[-1].rsplit(".", 1)[0])).convert("L")) > 127
            assert pct == pytest.approx(100.0 * m.mean(), abs=0.05), (ds, path)  # only sub-floor specks may differ

    vocab = pd.read_parquet(cfg.data_root / "tables" / "label_vocab.parquet").set_index(["dataset_id", "raw_label"])
    assert vocab.loc[("stare_vessels", "retinal vessels"), "department"] == "Ophthalmology"
    assert vocab.loc[("dsb2018_nuclei", "nucleus"), "canonical_label"] == "cell nucleus"
    for ds in NEW:
        assert (vocab.loc[ds, "status"] == "mesh").all(), ds


def test_no_unit_for_an_image_of_unknown_pixel_size(shared_build):
    rows = exported_rows(shared_build.data_root / "benchmark")
    cands = pd.read_parquet(shared_build.data_root / "tables" / "qa_candidates.parquet",
                            columns=["item_id", "spacing_source", "generator", "generator_params"])
    rows = rows.merge(cands[["item_id", "spacing_source"]], on="item_id", how="left")
    unknown = rows[rows["spacing_source"] == "unknown"]
    assert len(unknown) > 0
    text = unknown[["question", "A", "B", "C", "D", "E"]].fillna("").astype(str).agg(" ".join, axis=1)
    assert not text.str.contains(UNIT).any(), text[text.str.contains(UNIT)].tolist()[:5]
    meas = cands[cands["generator"] == "measurement"]
    for p, src in zip(meas["generator_params"], meas["spacing_source"]):
        q = json.loads(p)
        assert (q["unit"] == "%") == (src == "unknown") and q["spacing_source"] == src


def _lum(rgb) -> np.ndarray:
    c = np.asarray(rgb, float) / 255.0
    c = np.where(c <= 0.03928, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return 0.2126 * c[..., 0] + 0.7152 * c[..., 1] + 0.0722 * c[..., 2]


def _ratio(a: float, b: float) -> float:
    return (max(a, b) + 0.05) / (min(a, b) + 0.05)


def _grow(m: np.ndarray, t: int) -> np.ndarray:
    return cv2.dilate(m.astype(np.uint8), np.ones((2 * t + 1, 2 * t + 1), np.uint8)) > 0


def test_marks_contrast_with_their_surroundings_in_the_exported_images(shared_build):
    """Decoded from the exported Parquet images: a line of one colour (its colour from the item's render
    parameters) against the pixels beside it, a band of the line's width (other outlines and their halos left
    out); a named outline that needed a halo against the halo, and the halo against the pixels beyond it."""
    root = shared_build.data_root
    rows = exported_rows(root / "benchmark")
    params = dict(pd.read_parquet(root / "tables" / "rendered_items.parquet", columns=["item_id", "render_params"]).values)
    checked = {"single": 0, "named": 0, "halo": 0}
    for r in rows.itertuples():
        p = json.loads(params[r.item_id])
        if "marks" not in p and ("color" not in p or "alpha" in p):  # unmarked images; fills: tests/test_render.py
            continue
        img = np.asarray(Image.open(io.BytesIO(r.image["bytes"])).convert("RGB")).astype(int)
        t = p["thickness"]
        if "color" in p:
            c = np.array(p["color"])
            ring = (img == c).all(-1)
            assert ring.any(), r.item_id
            band = _grow(ring, t) & ~ring
            for x0, y0, x1, y1 in p.get("tags", []):  # the letter tags (white on black) are not the background
                band[y0:y1, x0:x1] = False
            assert _ratio(float(_lum(c)), float(_lum(img[band]).mean())) >= 3.0 - 1e-9, (r.item_id, p)
            checked["single"] += 1
            continue
        rings = [(img == np.array(c)).all(-1) for c in p["colors"]]
        for i, (c, m) in enumerate(zip(p["colors"], p["marks"])):
            others = np.zeros(img.shape[:2], bool)
            for j, o in enumerate(rings):
                if j != i:
                    others |= _grow(o, 1)
            ring = rings[i]
            if m["halo"] is None:
                band = _grow(ring, t) & ~ring & ~others
                assert _ratio(float(_lum(c)), float(_lum(img[band]).mean())) >= 3.0 - 1e-9, (r.item_id, i, p)
                checked["named"] += 1
            else:
                halo = (img == np.array(m["halo"])).all(-1) & _grow(ring, 1) & ~ring
                assert halo.any()
                beyond = _grow(ring, t + 1) & ~_grow(ring, 1) & ~others
                assert _ratio(float(_lum(c)), float(_lum(m["halo"]))) >= 3.0
                assert _ratio(float(_lum(m["halo"])), float(_lum(img[beyond]).mean())) >= 3.0, (r.item_id, i, p)
                checked["halo"] += 1
    assert min(checked.values()) > 0, checked
