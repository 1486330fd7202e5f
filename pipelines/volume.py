"""SimpleITK volume helpers: header-only reads, orientation codes, reorientation, grid checks."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
import SimpleITK as sitk
from isal import igzip, isal_zlib

from pipelines.errors import Reason, SampleError
from pipelines.sourcefiles import DEFAULT_LIMITS, Limits, check_file


@dataclass(frozen=True)
class Grid:
    size: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]

    @classmethod
    def of(cls, img: sitk.Image | sitk.ImageFileReader) -> "Grid":
        return cls(tuple(img.GetSize()), tuple(img.GetSpacing()), tuple(img.GetOrigin()),
                   tuple(img.GetDirection()))

    @property
    def voxels(self) -> int:
        return int(np.prod(self.size))


@dataclass(frozen=True)
class VolumeFacts:
    """What ingest records of one volume, from one pass over its voxels: geometry, value range, and for a
    label volume its non-zero values (and whether any value is not an integer)."""

    grid: Grid
    low: float
    high: float
    values: list[int] | None = None
    non_integer: bool = False

    @property
    def orientation(self) -> str:
        return orientation_code(self.grid.direction)


def orientation_code(direction: tuple[float, ...]) -> str:
    """Three-letter DICOM-convention code (letters name where each axis points to, e.g. LPS)."""
    return sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(direction)


def read_header(path: Path, rel: str, max_voxels: int, limits: Limits = DEFAULT_LIMITS) -> Grid:
    """Geometry without reading voxels; refuses volumes larger than the limit (and anything but a regular
    file under the size cap: ITK would block on a FIFO and read /dev/zero for ever)."""
    return _header(path, rel, max_voxels, limits)[0]


DETACHED_KEYS = {".mhd": "elementdatafile", ".nhdr": "data file"}


def detached_data_files(path: Path, limits: Limits = DEFAULT_LIMITS) -> list[Path]:
    """The data files a detached header (.mhd, .nhdr) names: ITK opens them too, so they are checked too."""
    key = next((k for suffix, k in DETACHED_KEYS.items() if path.name.lower().endswith(suffix)), None)
    if key is None:
        return []
    from pipelines.sourcefiles import read_bytes
    text = read_bytes(path, path.name, Limits(min(limits.max_bytes, 1 << 20), limits.timeout_s))
    out = []
    for line in text.decode("latin-1").splitlines():
        name, sep, value = line.partition(":" if key == "data file" else "=")
        if sep and name.strip().lower() in (key, "datafile") and value.strip():
            value = value.strip()
            if value.upper() in ("LOCAL", "LIST") or value.upper().startswith("LIST"):
                continue
            out.append(path.parent / value.split()[0])
    return out


def check_nifti_payload(path: Path, rel: str) -> None:
    """Stream the NIfTI voxels once with nibabel: ITK's reader silently zero-fills a truncated
    .nii.gz and turns NaN into 0, so both would otherwise pass unnoticed."""
    try:
        with streamed_nifti(path) as proxy:
            shape = proxy.shape
            step = max(1, int(2**24 // max(1, int(np.prod(shape[:-1])))))
            for k in range(0, shape[-1] if len(shape) > 2 else 1, step):
                slab = np.asarray(proxy[..., k:k + step] if len(shape) > 2 else proxy[:])
                if slab.dtype.kind == "f" and not np.isfinite(slab).all():
                    raise SampleError(Reason.NON_FINITE,
                                      f"'{rel}' has {int((~np.isfinite(slab)).sum())} NaN/Inf voxels (first in "
                                      f"slices {k}..{k + step - 1}); re-export it without them", rel)
    except SampleError:
        raise
    except UNREADABLE as exc:
        raise SampleError(Reason.CORRUPT_FILE, f"'{rel}' is truncated or corrupt: {exc}", rel) from exc


@contextmanager
def streamed_nifti(path: Path) -> Iterator:
    """The voxels of a NIfTI file (nibabel's array proxy) read from one open file, in order: reopened per slab, a
    .nii.gz would be inflated again from its start each time. gzip is inflated by ISA-L, 2-3x zlib's speed (a
    35 MB CT: 0.33 s against 0.77 s)."""
    with (igzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")) as fh:
        yield _nifti_class(raw_nifti_header(path)).from_stream(fh).dataobj


# what reading a damaged NIfTI raises: truncation, a bad deflate stream (zlib's or ISA-L's), a bad header
UNREADABLE = (EOFError, OSError, ValueError, zlib.error, isal_zlib.error, nib.filebasedimages.ImageFileError,
              nib.spatialimages.HeaderDataError)


SLAB_VOXELS = 1 << 22  # voxels per slab of a streamed pass: memory stays flat whatever the volume


def _streamable(path: Path, reader: sitk.ImageFileReader) -> bool:
    """A scalar 3D NIfTI without value scaling: nibabel's raw voxels are exactly what ITK would decode."""
    if not path.name.endswith((".nii", ".nii.gz")) or reader.GetDimension() != 3 \
            or reader.GetNumberOfComponents() != 1:
        return False
    try:
        slope, inter = nib.load(str(path)).header.get_slope_inter()
    except (OSError, ValueError, EOFError, nib.filebasedimages.ImageFileError):
        return True  # the streamed pass reports it as corrupt, as the full read would
    return slope in (None, 1.0) and inter in (None, 0.0)


def _header(path: Path, rel: str, max_voxels: int, limits: Limits = DEFAULT_LIMITS
            ) -> tuple[Grid, sitk.ImageFileReader]:
    check_file(path, rel, limits)
    for data in detached_data_files(path, limits):
        check_file(data, f"{rel} -> {data.name}", limits)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise SampleError(Reason.CORRUPT_FILE, f"'{rel}' is not a readable volume: {_first_line(exc)}", rel) from exc
    grid = Grid.of(reader)
    if grid.voxels > max_voxels:
        raise SampleError(Reason.TOO_MANY_PIXELS,
                          f"'{rel}' declares {grid.size} = {grid.voxels} voxels, over the limit {max_voxels} "
                          "(ingest.max_pixels)", rel)
    return grid, reader


def _value_counts(slab: np.ndarray, high: int) -> np.ndarray:
    """How many voxels of a non-negative integer slab hold each value 0..high (int64). 8- and 16-bit slabs go
    through OpenCV's histogram over the slab's memory as it lies (a NIfTI slab is column-major: a C-order ravel
    would copy it), a third of np.bincount's time on a CT label volume; its float32 counts are exact below 2**24
    voxels, and a slab holds at most SLAB_VOXELS."""
    flat = slab.ravel(order="K")
    if slab.dtype in (np.uint8, np.uint16) and flat.size < 1 << 24:
        hist = cv2.calcHist([flat.reshape(1, -1)], [0], None, [high + 1], [0, high + 1])
        return hist.ravel().astype(np.int64)
    return np.bincount(flat, minlength=high + 1)


class _Tally:
    """Range, finiteness and (for labels) present values, accumulated slab by slab."""

    def __init__(self, rel: str, labels: bool):
        self.rel, self.labels = rel, labels
        self.low, self.high = np.inf, -np.inf
        self.counts = np.zeros(0, np.int64)
        self.others: set[int] = set()
        self.non_integer = False

    def add(self, slab: np.ndarray, where: str = "") -> None:
        if slab.size == 0:
            return
        if slab.dtype.kind == "f" and not np.isfinite(slab).all():
            raise SampleError(Reason.NON_FINITE, f"'{self.rel}' has {int((~np.isfinite(slab)).sum())} NaN/Inf "
                              f"voxels{where}; re-export it without them", self.rel)
        lo, hi = slab.min(), slab.max()
        self.low, self.high = min(self.low, float(lo)), max(self.high, float(hi))
        if not self.labels:
            return
        if slab.dtype.kind == "f":
            self.non_integer |= not np.array_equal(slab, np.round(slab))
            slab = slab.astype(np.int64)
            lo, hi = slab.min(), slab.max()
        if slab.dtype.kind in "ui" and lo >= 0 and hi < 65536:
            c = _value_counts(slab, max(int(hi), len(self.counts) - 1))  # at least as many values as so far
            c[:len(self.counts)] += self.counts
            self.counts = c
        else:
            self.others.update(int(v) for v in np.unique(slab))

    def facts(self, grid: Grid) -> VolumeFacts:
        low, high = (0.0, 0.0) if self.low > self.high else (self.low, self.high)
        values = None
        if self.labels:
            values = sorted((set(np.flatnonzero(self.counts).tolist()) | self.others) - {0})
        return VolumeFacts(grid, low, high, values, self.non_integer)


def array_facts(arr: np.ndarray, grid: Grid, rel: str, labels: bool) -> VolumeFacts:
    """:class:`VolumeFacts` of a decoded (z, y, x) array, a slab of planes at a time (no full-size temporaries)."""
    tally = _Tally(rel, labels)
    step = max(1, SLAB_VOXELS // max(1, int(np.prod(arr.shape[1:]))))
    for k in range(0, arr.shape[0], step):
        tally.add(np.asarray(arr[k:k + step]))
    return tally.facts(grid)


def scan_volume(path: Path, rel: str, max_voxels: int, labels: bool = False,
                limits: Limits = DEFAULT_LIMITS) -> VolumeFacts:
    """Check one volume and summarize it with a single decode of its voxels and memory bounded by a slab.

    A scalar, unscaled 3D NIfTI is streamed once with nibabel (memory-mapped when uncompressed): the pass that
    catches truncation and NaN (which ITK would zero-fill or zero) also yields the value range and the label
    values; the geometry comes from ITK's header read, checked against the sform/qform. Any other volume is
    read whole with :func:`read_volume`."""
    grid, reader = _header(path, rel, max_voxels, limits)
    if not _streamable(path, reader):
        img = read_volume(path, rel, max_voxels, limits=limits)
        return array_facts(sitk.GetArrayViewFromImage(img), Grid.of(img), rel, labels)
    tally = _Tally(rel, labels)
    try:
        with streamed_nifti(path) as proxy:
            shape = proxy.shape
            step = max(1, SLAB_VOXELS // max(1, int(shape[0] * shape[1])))
            for k in range(0, shape[2], step):
                tally.add(np.asarray(proxy[:, :, k:k + step]), f" (first in slices {k}..{k + step - 1})")
    except SampleError:
        raise
    except UNREADABLE as exc:
        raise SampleError(Reason.CORRUPT_FILE, f"'{rel}' is truncated or corrupt: {exc}", rel) from exc
    check_nifti_geometry(path, rel, grid)
    return tally.facts(grid)


def read_volume(path: Path, rel: str, max_voxels: int, verify: bool = True,
                limits: Limits = DEFAULT_LIMITS) -> sitk.Image:
    """Read a volume; ``verify`` streams NIfTI payloads once more (ingest does, later loads skip it)."""
    read_header(path, rel, max_voxels, limits)
    if verify and path.name.endswith((".nii", ".nii.gz")):
        check_nifti_payload(path, rel)
    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise SampleError(Reason.CORRUPT_FILE, f"'{rel}' could not be decoded: {_first_line(exc)}", rel) from exc
    if img.GetNumberOfComponentsPerPixel() > 1:
        raise SampleError(Reason.UNSUPPORTED_PIXEL_TYPE,
                          f"'{rel}' has {img.GetNumberOfComponentsPerPixel()} components per voxel (RGB/vector); "
                          "medbench reads scalar volumes: convert it to grey levels or split the channels", rel)
    if img.GetDimension() == 4:  # multi-channel (e.g. MSD multi-modal): keep the first channel
        size = list(img.GetSize())
        img = sitk.Extract(img, size[:3] + [0], [0, 0, 0, 0])
    if verify and img.GetDimension() == 3 and path.name.endswith((".nii", ".nii.gz")):
        check_nifti_geometry(path, rel, img)
    return img


RAS_FROM_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def itk_affine(img: sitk.Image | Grid) -> np.ndarray:
    """The voxel-to-world matrix ITK uses for a 3D image (or its header's grid), in NIfTI's RAS convention."""
    grid = img if isinstance(img, Grid) else Grid.of(img)
    a = np.eye(4)
    a[:3, :3] = np.array(grid.direction).reshape(3, 3) @ np.diag(grid.spacing)
    a[:3, 3] = grid.origin
    return RAS_FROM_LPS @ a


def _nifti_class(header) -> type:
    """The nibabel image class of a raw NIfTI header (NIfTI-2 or NIfTI-1)."""
    return nib.Nifti2Image if isinstance(header, nib.Nifti2Header) else nib.Nifti1Image


def raw_nifti_header(path: Path):
    """The NIfTI header as stored: nibabel's loader repairs pixdims as it reads (zero becomes 1, a negative one its
    absolute value), which would hide exactly what the geometry check must see. NIfTI-1 or -2, gzipped or not."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as fh:
        block = fh.read(540)
    for klass in (nib.Nifti1Header, nib.Nifti2Header):
        size = klass.template_dtype.itemsize
        if len(block) >= size and klass.may_contain_header(block[:size]):
            return klass(block[:size], check=False)
    return nib.load(str(path)).header  # not a NIfTI header nibabel can read raw: its own reading


def check_nifti_geometry(path: Path, rel: str, img: sitk.Image | Grid) -> None:
    """The geometry ITK reads must be the one the header's sform/qform states.

    ITK repairs bad pixdims silently (a negative one becomes positive, mirroring the volume against
    the sform; zero becomes 1 mm). Nothing is guessed here: a volume whose voxel sizes are not positive,
    or whose ITK geometry disagrees with its sform (or qform when there is no sform), is quarantined."""
    hdr = raw_nifti_header(path)
    itk_spacing = img.spacing if isinstance(img, Grid) else img.GetSpacing()
    pixdim = [float(v) for v in hdr["pixdim"][1:4]]
    problems = []
    if any(v <= 0 for v in pixdim):
        problems.append(f"pixdim {pixdim} has a zero or negative voxel size")
    for name, getter in (("sform", hdr.get_sform), ("qform", hdr.get_qform)):
        try:
            matrix, code = getter(coded=True)
        except nib.spatialimages.HeaderDataError:  # a qform needs positive pixdims: that problem is named above
            continue
        if matrix is None or not code:
            continue
        if not np.allclose(itk_affine(img), matrix, rtol=1e-4, atol=1e-3):
            spacing = np.round(np.linalg.norm(matrix[:3, :3], axis=0), 4).tolist()
            problems.append(f"the {name} (voxel size {spacing}) disagrees with the geometry read "
                            f"(voxel size {np.round(itk_spacing, 4).tolist()}, a mirror or a wrong size)")
        break  # the sform wins when present, as in every NIfTI reader
    if problems:
        raise SampleError(Reason.BAD_GEOMETRY, f"'{rel}': {'; '.join(problems)}; fix the header (pixdim must "
                          "be positive and agree with the sform/qform) and re-export", rel)


def _first_line(exc: Exception) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    useful = [ln for ln in lines if "ERROR" in ln or "Exception" in ln or "Could not" in ln]
    return (useful or lines or [type(exc).__name__])[-1][:300]


def reorient(img: sitk.Image, code: str) -> sitk.Image:
    """Permute/flip axes (no interpolation) so the direction cosines match ``code``."""
    if orientation_code(img.GetDirection()) == code:
        return img
    return sitk.DICOMOrient(img, code)


def reoriented_grid(grid: Grid, code: str) -> Grid:
    """The grid :func:`reorient` would give, from the geometry alone (no voxels): DICOMOrient's axis permutation
    and flips are read off a tiny probe image with the same direction cosines, then applied to size, spacing,
    direction and origin (the origin moves to the far end of each flipped axis)."""
    if len(grid.size) != 3 or orientation_code(grid.direction) == code:
        return grid
    probe = sitk.Image([2, 3, 4], sitk.sitkUInt8)
    probe.SetDirection(grid.direction)
    turned = sitk.DICOMOrient(probe, code)
    perm = [[2, 3, 4].index(n) for n in turned.GetSize()]
    old = np.array(grid.direction).reshape(3, 3)
    new = np.array(turned.GetDirection()).reshape(3, 3)
    origin = np.array(grid.origin, float)
    for i, p in enumerate(perm):
        if new[:, i] @ old[:, p] < 0:  # flipped: the new first voxel is the old last one along this axis
            origin = origin + old[:, p] * grid.spacing[p] * (grid.size[p] - 1)
    return Grid(tuple(grid.size[p] for p in perm), tuple(grid.spacing[p] for p in perm), tuple(origin.tolist()),
                tuple(new.ravel().tolist()))


def check_grid(image: sitk.Image | Grid, label: sitk.Image | Grid, rel: str, tol: float, code: str) -> None:
    """Image and label must share shape, spacing, origin and direction after reorientation (judged from their
    geometry: nothing is resampled or copied)."""
    a, b = (reoriented_grid(g if isinstance(g, Grid) else Grid.of(g), code) for g in (image, label))
    problems = []
    if a.size != b.size:
        problems.append(f"size {b.size} vs image {a.size}")
    if not np.allclose(a.spacing, b.spacing, rtol=tol, atol=tol):
        problems.append(f"spacing {np.round(b.spacing, 4).tolist()} vs {np.round(a.spacing, 4).tolist()}")
    min_sp = float(min(a.spacing))
    if not np.allclose(a.origin, b.origin, rtol=0, atol=max(tol, 0.01) * min_sp * 10):
        problems.append(f"origin {np.round(b.origin, 3).tolist()} vs {np.round(a.origin, 3).tolist()}")
    if not np.allclose(a.direction, b.direction, atol=tol * 10):
        problems.append("direction cosines differ")
    if problems:
        raise SampleError(Reason.GRID_MISMATCH,
                          f"label of '{rel}' is not on the image grid ({'; '.join(problems)}); resample the "
                          "label onto the image (nearest neighbour) or fix its header", rel)


def obliquity_deg(direction: tuple[float, ...]) -> float:
    """The largest angle, in degrees, between an image axis and the patient axis nearest to it (0 for an
    axis-aligned grid, whatever its permutation or flips)."""
    d = np.asarray(direction, float).reshape(3, 3) if len(direction) == 9 else None
    if d is None:
        return 0.0
    cols = d / np.linalg.norm(d, axis=0, keepdims=True)
    cosines = np.clip(np.abs(cols).max(axis=0), 0.0, 1.0)
    return float(np.degrees(np.arccos(cosines)).max())


def nearest_axis_direction(direction: tuple[float, ...]) -> np.ndarray:
    """The axis-aligned direction matrix (a signed permutation) nearest to ``direction``: each image axis
    goes to the patient axis it is closest to, each patient axis used once."""
    d = np.asarray(direction, float).reshape(3, 3)
    out = np.zeros((3, 3))
    free_rows, free_cols = [0, 1, 2], [0, 1, 2]
    for _ in range(3):  # greedy on the largest remaining |cosine|: unique for any rotation under 45 degrees
        sub = np.abs(d[np.ix_(free_rows, free_cols)])
        r, c = np.unravel_index(int(np.argmax(sub)), sub.shape)
        row, col = free_rows.pop(r), free_cols.pop(c)
        out[row, col] = 1.0 if d[row, col] >= 0 else -1.0
    return out


def resample_axis_aligned(image: sitk.Image, labels: list[sitk.Image]) -> tuple[sitk.Image, list[sitk.Image], dict]:
    """Resample an oblique volume (linear) and its label volumes (nearest neighbour) onto the axis-aligned grid
    nearest to it: same voxel size per axis, extent covering the whole rotated volume, voxels outside it at the
    image's minimum (labels 0). Returns what was done, for the record."""
    src = np.asarray(image.GetDirection(), float).reshape(3, 3)
    target = nearest_axis_direction(image.GetDirection())
    spacing = np.asarray(image.GetSpacing(), float)
    size = np.asarray(image.GetSize())
    # the new axis j takes the spacing of the source axis it came from
    src_of = [int(np.argmax(np.abs(src.T @ target[:, j]))) for j in range(3)]
    new_spacing = spacing[src_of]
    corners = np.array([[i, j, k] for i in (0, size[0] - 1) for j in (0, size[1] - 1) for k in (0, size[2] - 1)], float)
    world = np.asarray(image.GetOrigin()) + (corners * spacing) @ src.T
    local = world @ target  # coordinates along the new axes
    lo, hi = local.min(axis=0), local.max(axis=0)
    new_size = [int(np.ceil((hi[j] - lo[j]) / new_spacing[j] - 1e-6)) + 1 for j in range(3)]
    origin = target @ lo
    arr = sitk.GetArrayViewFromImage(image)
    background = float(arr.min()) if arr.size else 0.0

    def onto(img: sitk.Image, interp, default: float) -> sitk.Image:
        return sitk.Resample(img, new_size, sitk.Transform(), interp, tuple(origin), tuple(new_spacing),
                             tuple(target.ravel()), default, img.GetPixelID())

    info = {"oblique_deg": round(obliquity_deg(image.GetDirection()), 3),
            "resampled_to": orientation_code(tuple(target.ravel())), "resampled_size": new_size}
    return onto(image, sitk.sitkLinear, background), [onto(lab, sitk.sitkNearestNeighbor, 0) for lab in labels], info


def check_oblique(image: sitk.Image | Grid, rel: str, policy: str, tolerance_deg: float) -> dict:
    """{} for an axis-aligned volume; for an oblique one, what describe will do (recorded in the sample), or a
    SampleError (oblique_orientation) when the policy is to quarantine. ``image``: a volume or its header grid."""
    direction = tuple(image.direction if isinstance(image, Grid) else image.GetDirection())
    if len(direction) != 9:
        return {}
    angle = obliquity_deg(direction)
    if angle <= tolerance_deg:
        return {}
    if policy != "resample":
        raise SampleError(Reason.OBLIQUE_ORIENTATION,
                          f"'{rel}' is oblique: its axes are rotated {angle:.1f} degrees from the patient axes "
                          f"(over standardize.oblique_tolerance_deg = {tolerance_deg:g}); set standardize.oblique: "
                          "resample to resample it onto the nearest axis-aligned grid, or reslice it yourself", rel)
    return {"oblique_deg": round(angle, 3), "oblique": "resampled to the nearest axis-aligned grid "
                                                       "(linear; labels nearest neighbour)"}
