"""Five faults that once survived the suite, each pinned by a fast test whose expectation is worked out by hand
(or re-derived with numpy/nibabel), never read back from the code under test:

* a coronal plane shown upside down (head at the bottom);
* two groups sharing a byte-identical plane (same sha256) left in separate leakage components;
* a laterality stem that names the wrong patient side for the viewer's left;
* a NIfTI whose pixdim is 0 and that has no sform/qform given a made-up voxel size instead of being refused;
* a box ring drawn over the box's own pixels instead of just outside them.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from pipelines.validity.leakage import leak_components
from pipelines.config import GeneratorSettings, RenderSettings
from pipelines.errors import Reason, SampleError
from pipelines.geometry import plane_spacing_2d
from pipelines.candidates.generators import laterality
from pipelines.candidates.generators.phrasing import flipped, stem
from pipelines.render.boxes import draw_lettered_boxes
from pipelines.render.draw import box_ring, draw_prompt
from pipelines.standardize.display import display_size
from pipelines.standardize.planes import display_directions, plane, plane_spacing, stack
from pipelines.volume import check_nifti_geometry, scan_volume


# --- 1. coronal display orientation ---------------------------------------------------------------------------

def _coded_volume() -> np.ndarray:
    """(z, y, x) LPS array whose value spells its own index: 100 z + 10 y + x."""
    z, y, x = np.meshgrid(np.arange(4), np.arange(5), np.arange(6), indexing="ij")
    return 100 * z + 10 * y + x


def test_coronal_plane_shows_the_head_at_the_top():
    """Radiological coronal display: rows run superior -> inferior (z falls down the rows), columns run
    patient right -> left (x, which grows toward the patient's left in LPS, rises along the columns)."""
    vol = _coded_volume()
    cor = plane(vol, "coronal", 2)
    assert cor.shape == (4, 6)
    assert cor[0].tolist() == [320, 321, 322, 323, 324, 325]  # top row: highest z, the head end
    assert cor[-1].tolist() == [20, 21, 22, 23, 24, 25]  # bottom row: z = 0, the feet end
    assert cor[:, 0].tolist() == [320, 220, 120, 20]


def test_coronal_stack_matches_hand_planes_and_the_stated_directions():
    vol = _coded_volume()
    st = stack(vol, "coronal", np.array([1, 4]))
    assert st.shape == (2, 4, 6)
    assert st[1, 0, 0] == 340 and st[1, 3, 5] == 45 and st[0, 0, 0] == 310
    # directions toward which columns and rows grow: x (L) across, z reversed (I) down
    assert display_directions("LPS", "coronal") == ("L", "I")
    assert display_directions("RAS", "coronal") == ("R", "I")
    assert display_directions("LPI", "coronal") == ("L", "S")  # a z pointing to the feet is shown reversed too
    assert display_directions("LPS", "axial") == ("L", "P")
    assert display_directions("LPS", "sagittal") == ("P", "I")
    assert display_directions("LPS", "oblique") is None and display_directions("LP", "axial") is None
    assert display_directions(None, "axial") is None


def test_sagittal_and_axial_planes_by_hand():
    vol = _coded_volume()
    assert plane(vol, "axial", 3)[1, 2] == 312  # axial keeps (y, x)
    sag = plane(vol, "sagittal", 5)
    assert sag.shape == (4, 5) and sag[0].tolist() == [305, 315, 325, 335, 345] and sag[-1, 0] == 5
    assert np.array_equal(stack(vol, "sagittal", np.array([5]))[0], sag)
    assert np.array_equal(stack(vol, "axial", np.array([3]))[0], plane(vol, "axial", 3))
    assert plane_spacing((0.5, 0.7, 3.0), "coronal") == [0.5, 3.0]
    assert plane_spacing((0.5, 0.7, 3.0), "sagittal") == [0.7, 3.0]
    assert plane_spacing((0.5, 0.7, 3.0), "axial") == [0.5, 0.7]
    with pytest.raises(ValueError):
        plane(vol, "oblique", 0)


# --- 2. sha256 link in leakage components -----------------------------------------------------------------------

def test_identical_file_hash_alone_joins_two_groups():
    """g2 and g7 share a plane byte for byte, but their pHashes are 64 bits apart (complements): only the sha256
    edge can join them. Empty or missing hashes join nothing."""
    rows = [("g7", "sha-same", "0000000000000000"), ("g2", "sha-same", "ffffffffffffffff"),
            ("g5", "", "00000000ffffffff"), ("g9", "", "ffffffff00000000"),
            ("g3", None, "0f0f0f0f0f0f0f0f"), ("g4", None, "f0f0f0f0f0f0f0f0")]
    items = pd.DataFrame(rows, columns=["group_id", "sha256", "phash"])
    comp = leak_components(items, bits=4)
    assert comp.tolist() == ["g2", "g2", "g5", "g9", "g3", "g4"]  # the smallest group id names a component


# --- 3. laterality stem ----------------------------------------------------------------------------------------

def _lat_rows(orientation: str, side: str) -> list[dict]:
    return [{"side": side, "orientation": orientation, "axis": "axial", "image_id": "img", "department": "Urology",
             "semantic_type": "organ", "region_id": "r1", "raw_label": f"kidney_{side}"}]


@pytest.mark.parametrize("orientation,viewer_left", [("LPS", "patient's right"), ("RAS", "patient's left"),
                                                     ("LAS", "patient's right"), ("RPI", "patient's left")])
@pytest.mark.parametrize("side", ["left", "right"])
def test_laterality_stem_names_the_side_on_the_viewers_left(orientation, viewer_left, side):
    """Columns growing toward L put the patient's right on the viewer's left (radiological); toward R, the reverse.
    The key is the structure's own side whatever the display."""
    g = GeneratorSettings()
    (spec,) = laterality.plane_specs(_lat_rows(orientation, side), np.random.default_rng(0), g)
    assert spec.answers == [side.capitalize()] and spec.answer_label == f"patient's {side}"
    assert spec.params == {"side": side, "viewer_left_is": viewer_left, "mirrored": False}
    _, text = stem({"generator": "laterality", "marks": [{"colour": "red"}], **spec.params}, np.random.default_rng(0))
    assert text.endswith(f"The image is displayed with the {viewer_left} on the viewer's left.")


def test_laterality_needs_a_left_right_column_axis():
    g = GeneratorSettings()
    rows = _lat_rows("LPS", "left")
    assert laterality.plane_specs([dict(rows[0], axis="sagittal")], np.random.default_rng(0), g) == []
    assert laterality.plane_specs([dict(rows[0], orientation=None)], np.random.default_rng(0), g) == []
    assert laterality.plane_specs([dict(rows[0], side=None)], np.random.default_rng(0), g) == []


@pytest.mark.parametrize("said,then", [("patient's right", "patient's left"), ("patient's left", "patient's right")])
def test_mirrored_stem_swaps_the_stated_side(said, then):
    q = f"Which side? The image is displayed with the {said} on the viewer's left."
    params, text = flipped(json.dumps({"side": "left", "viewer_left_is": said, "mirrored": False}), q)
    assert text == f"Which side? This image has been mirrored left to right, so the {then} is on the viewer's left."
    assert json.loads(params) == {"side": "left", "viewer_left_is": then, "mirrored": True}


def test_laterality_stem_agrees_with_where_the_structure_is_drawn():
    """Re-derived from the pixels: a structure at high x of an LPS array (the patient's left) lands on the
    displayed plane's right half, so the viewer's left must be the patient's right."""
    vol = np.zeros((3, 10, 10), np.uint8)
    vol[1, 4:6, 7:9] = 1  # x = 7..8: toward L
    shown = plane(vol, "axial", 1)
    cols = np.nonzero(shown)[1]
    assert cols.min() > shown.shape[1] / 2  # drawn on the viewer's right
    (spec,) = laterality.plane_specs(_lat_rows("LPS", "left"), np.random.default_rng(0), GeneratorSettings())
    assert spec.params["viewer_left_is"] == "patient's right"


# --- 4. zero voxel size without an sform -------------------------------------------------------------------------

def _nifti(path, zooms, sform: bool = False, qform: bool = False) -> None:
    """An uncompressed NIfTI-1 (identity affine) whose pixdim[1:4] (offset 80, three little-endian float32) and
    qform/sform codes (offsets 252 and 254, int16) are patched after saving, so nibabel's save cannot fill them in
    from an affine. Read back raw (no header repair) to be sure the bytes say what the test means."""
    nib.save(nib.Nifti1Image(np.zeros((4, 5, 6), np.int16), np.eye(4)), str(path))
    raw = bytearray(path.read_bytes())
    raw[80:92] = np.asarray(zooms, "<f4").tobytes()
    raw[252:256] = np.asarray([int(qform), int(sform)], "<i2").tobytes()
    path.write_bytes(bytes(raw))
    with open(path, "rb") as fh:
        hdr = nib.Nifti1Header.from_fileobj(fh, check=False)
    assert [float(v) for v in hdr["pixdim"][1:4]] == list(zooms)
    assert (int(hdr["qform_code"]), int(hdr["sform_code"])) == (int(qform), int(sform))


# nibabel's loader repairs a header as it reads it (a zero pixdim becomes 1, a negative one its absolute value);
# the geometry check reads the header raw, so it sees the zero that ITK would silently read as 1 mm.
@pytest.mark.parametrize("zooms", [(0.0, 1.0, 1.0), (1.0, 0.0, 2.0), (1.0, 1.0, 0.0), (-1.0, 1.0, 1.0)])
def test_zero_voxel_size_without_sform_or_qform_is_refused(tmp_path, zooms):
    """Nothing in the header states a size: ITK reads 1 mm for the zero; the volume must be refused."""
    import SimpleITK as sitk
    path = tmp_path / "v.nii"
    _nifti(path, zooms)
    img = sitk.ReadImage(str(path))
    with pytest.raises(SampleError) as err:
        check_nifti_geometry(path, "v.nii", img)
    assert err.value.reason == Reason.BAD_GEOMETRY and "zero or negative voxel size" in str(err.value)


def test_ingest_scan_refuses_a_zero_voxel_size_without_sform(tmp_path):
    path = tmp_path / "v.nii"
    _nifti(path, (0.0, 1.0, 1.0))
    with pytest.raises(SampleError) as err:
        scan_volume(path, "v.nii", 10 ** 6)
    assert err.value.reason == Reason.BAD_GEOMETRY


def test_positive_voxel_size_without_sform_is_accepted(tmp_path):
    import SimpleITK as sitk
    path = tmp_path / "v.nii"
    _nifti(path, (0.5, 0.75, 2.0))
    img = sitk.ReadImage(str(path))
    assert np.allclose(img.GetSpacing(), (0.5, 0.75, 2.0))
    check_nifti_geometry(path, "v.nii", img)  # no exception
    assert np.allclose(scan_volume(path, "v.nii", 10 ** 6).grid.spacing, (0.5, 0.75, 2.0))


def test_unknown_or_zero_2d_pixel_size_stays_unknown():
    """An empty or non-positive spacing is no spacing: it is never turned into millimetres."""
    assert plane_spacing_2d(None) == [] and plane_spacing_2d([]) == [] and plane_spacing_2d([0.5]) == []
    assert plane_spacing_2d([0.0, 0.4]) == [] and plane_spacing_2d([0.4, 0.0]) == []
    assert plane_spacing_2d([-0.4, 0.4]) == []
    assert plane_spacing_2d([0.3, 0.4, 2.0]) == [0.3, 0.4]
    assert plane_spacing_2d([0.3, 0.4, 0.0]) == [0.3, 0.4]  # only the plane's two axes count
    assert plane_spacing_2d(["0.25", 1]) == [0.25, 1.0]
    # the display then assumes square pixels: 30 x 20 stays 30 x 20
    geo = display_size(30, 20, [0.0, 0.4], 512)
    assert (geo.width, geo.height, geo.scale_x, geo.scale_y) == (30, 20, 1.0, 1.0)


# --- 5. box ring around, not inside, the box ---------------------------------------------------------------------

def test_box_ring_lies_just_outside_the_box():
    """Box columns 5..9, rows 6..11 (x1, y1 exclusive), t = 2: the ring fills columns 3..11, rows 4..13 minus the
    box itself: 9 x 10 - 5 x 6 = 60 pixels, none of them on the box."""
    ring = box_ring((20, 20), [5, 6, 10, 12], 2)
    expected = np.zeros((20, 20), bool)
    expected[4:14, 3:12] = True
    expected[6:12, 5:10] = False
    assert ring.sum() == 60
    assert np.array_equal(ring, expected)


def test_box_ring_is_clipped_at_the_image_border():
    ring = box_ring((10, 10), [0, 0, 3, 3], 2)  # rows/cols 0..4 minus the 3 x 3 box
    assert ring.sum() == 25 - 9 and not ring[:3, :3].any() and ring[4, 4] and not ring[5:].any()


def test_drawn_box_and_lettered_boxes_leave_the_boxed_pixels_untouched():
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    s = RenderSettings()
    out, params = draw_prompt(img, "box", s, bbox=[20, 10, 40, 30])
    assert np.array_equal(out[10:30, 20:40], img[10:30, 20:40])  # the structure stays visible
    colour = tuple(params["color"])
    t = params["thickness"]
    assert t == 1  # max(1, round(0.006 * 120))
    # the single-pixel band just outside the box is painted on all four sides
    for band in (out[9, 19:41], out[30, 19:41], out[9:31, 19], out[9:31, 40]):
        assert all(tuple(p) == colour for p in band)
    boxes = [[40, 40, 60, 60], [100, 60, 122, 84]]  # far enough from the borders for the tags to sit outside
    out2, _ = draw_lettered_boxes(img, boxes, ["A", "B"], s)
    for x0, y0, x1, y1 in boxes:
        assert np.array_equal(out2[y0:y1, x0:x1], img[y0:y1, x0:x1])
