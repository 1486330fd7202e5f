"""SimpleITK volume helpers: header-only reads, orientation codes, reorientation, grid checks."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from pipelines.errors import Reason, SampleError


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


def orientation_code(direction: tuple[float, ...]) -> str:
    """Three-letter DICOM-convention code (letters name where each axis points to, e.g. LPS)."""
    return sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(direction)


def read_header(path: Path, rel: str, max_voxels: int) -> Grid:
    """Geometry without reading voxels; refuses volumes larger than the limit."""
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
    return grid


def check_nifti_payload(path: Path, rel: str) -> None:
    """Stream the NIfTI voxels once with nibabel: ITK's reader silently zero-fills a truncated
    .nii.gz and turns NaN into 0, so both would otherwise pass unnoticed."""
    try:
        img = nib.load(str(path))
        proxy = img.dataobj
        shape = img.shape
        step = max(1, int(2**24 // max(1, int(np.prod(shape[:-1])))))
        for k in range(0, shape[-1] if len(shape) > 2 else 1, step):
            slab = np.asarray(proxy[..., k:k + step] if len(shape) > 2 else proxy[:])
            if slab.dtype.kind == "f" and not np.isfinite(slab).all():
                raise SampleError(Reason.NON_FINITE,
                                  f"'{rel}' has {int((~np.isfinite(slab)).sum())} NaN/Inf voxels (first in "
                                  f"slices {k}..{k + step - 1}); re-export it without them", rel)
    except SampleError:
        raise
    except (EOFError, OSError, ValueError, zlib.error, nib.filebasedimages.ImageFileError) as exc:
        raise SampleError(Reason.CORRUPT_FILE, f"'{rel}' is truncated or corrupt: {exc}", rel) from exc


def read_volume(path: Path, rel: str, max_voxels: int, verify: bool = True) -> sitk.Image:
    """Read a volume; ``verify`` streams NIfTI payloads once more (ingest does, later loads skip it)."""
    read_header(path, rel, max_voxels)
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


def itk_affine(img: sitk.Image) -> np.ndarray:
    """The voxel-to-world matrix ITK uses for a 3D image, in NIfTI's RAS convention."""
    a = np.eye(4)
    a[:3, :3] = np.array(img.GetDirection()).reshape(3, 3) @ np.diag(img.GetSpacing())
    a[:3, 3] = img.GetOrigin()
    return RAS_FROM_LPS @ a


def check_nifti_geometry(path: Path, rel: str, img: sitk.Image) -> None:
    """The geometry ITK reads must be the one the header's sform/qform states.

    ITK repairs bad pixdims silently (a negative one becomes positive, mirroring the volume against
    the sform; zero becomes 1 mm). Nothing is guessed here: a volume whose voxel sizes are not positive,
    or whose ITK geometry disagrees with its sform (or qform when there is no sform), is quarantined."""
    hdr = nib.load(str(path)).header
    pixdim = [float(v) for v in hdr["pixdim"][1:4]]
    problems = []
    if any(v <= 0 for v in pixdim):
        problems.append(f"pixdim {pixdim} has a zero or negative voxel size")
    for name, (matrix, code) in (("sform", hdr.get_sform(coded=True)), ("qform", hdr.get_qform(coded=True))):
        if matrix is None or not code:
            continue
        if not np.allclose(itk_affine(img), matrix, rtol=1e-4, atol=1e-3):
            spacing = np.round(np.linalg.norm(matrix[:3, :3], axis=0), 4).tolist()
            problems.append(f"the {name} (voxel size {spacing}) disagrees with the geometry read "
                            f"(voxel size {np.round(img.GetSpacing(), 4).tolist()}, a mirror or a wrong size)")
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


def check_grid(image: sitk.Image, label: sitk.Image, rel: str, tol: float, code: str) -> None:
    """Image and label must share shape, spacing, origin and direction after reorientation."""
    a, b = Grid.of(reorient(image, code)), Grid.of(reorient(label, code))
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
