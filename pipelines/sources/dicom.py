"""DICOM readers: image series, DICOM SEG and RT Structure Sets.

Only the tags listed in :data:`TAGS` are read from headers; patient-identifying values are
hashed with the configured salt for the group id and never written anywhere.
"""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.errors import InvalidDicomError

from pipelines.ids import stable_id
from pipelines.sourcefiles import check_file
from pipelines.sources.base import (
    LabelLayer,
    LoadedSample,
    Quarantined,
    Reader,
    Reason,
    SampleError,
    SampleRecord,
    check_finite,
    intensity_range,
    present_values,
)
from pipelines.volume import check_oblique, orientation_code, read_volume

TAGS = [
    "Modality", "SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID", "FrameOfReferenceUID",
    "PatientID", "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows",
    "Columns", "NumberOfFrames", "PhotometricInterpretation", "GantryDetectorTilt",
]
IMAGE_MODALITIES = {"CT", "MR", "PT", "CR", "DX", "MG", "US", "XA", "NM", "OT"}


@dataclass
class Header:
    rel: str
    ds: pydicom.Dataset

    def get(self, name: str, default=None):
        v = getattr(self.ds, name, default)
        return default if v is None or v == "" else v

    @property
    def normal(self) -> np.ndarray:
        iop = np.array(self.get("ImageOrientationPatient", [1, 0, 0, 0, 1, 0]), float)
        return np.cross(iop[:3], iop[3:])

    @property
    def position(self) -> float:
        ipp = np.array(self.get("ImagePositionPatient", [0, 0, 0]), float)
        return float(ipp @ self.normal)


def index_headers(reader: Reader, pattern: str = "**/*") -> tuple[list[Header], list[Quarantined]]:
    """Read the needed tags of every DICOM file under the root (files that are not DICOM are skipped)."""
    headers, bad = [], []
    for path in sorted(reader.ctx.root.glob(pattern)):
        if not path.is_file() or path.name in ("SOURCE.txt", "SHA256SUMS") or path.suffix in (".json", ".txt", ".nii", ".gz", ".nrrd"):
            continue
        rel = reader.ctx.rel(path)
        try:
            check_file(path, rel, reader.ctx.limits)
            ds = read_header(path)
        except SampleError as exc:  # too large (FIFOs and devices are not is_file(): the root walk reports them)
            bad.append(Quarantined(exc.path or rel, exc.reason, str(exc)))
            continue
        except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError) as exc:
            bad.append(Quarantined(rel, Reason.CORRUPT_FILE,
                                   f"'{rel}' is not a readable DICOM file: {type(exc).__name__}: {exc}"))
            continue
        headers.append(Header(rel, ds))
    return headers, bad


def _plausible(ds: pydicom.Dataset) -> bool:
    """A file read with force=True is DICOM only if its key tags look like DICOM values."""
    modality = str(ds.get("Modality", "") or "")
    if not (modality.isascii() and modality.replace("_", "").isalnum() and modality.isupper() and len(modality) <= 16):
        return False
    uid = str(ds.get("SOPInstanceUID", "") or "")
    if uid:
        return all(c.isdigit() or c == "." for c in uid) and len(uid) <= 64
    rows, cols = ds.get("Rows"), ds.get("Columns")
    return isinstance(rows, int) and isinstance(cols, int) and 0 < rows <= 65535 and 0 < cols <= 65535


def has_preamble(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(128)
        return fh.read(4) == b"DICM"


def with_preamble(src: Path, dst: Path) -> None:
    """A copy of a preamble-less file that ITK/GDCM can open: the file meta group, when present, only
    lacks the 128-byte preamble and 'DICM'; without it pydicom writes the meta from the dataset."""
    data = src.read_bytes()
    if data[:2] == b"\x02\x00":
        dst.write_bytes(b"\x00" * 128 + b"DICM" + data)
        return
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
    ds = pydicom.dcmread(src, force=True)
    implicit = ds.original_encoding[0] if ds.original_encoding[0] is not None else True
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.get("SOPClassUID", "1.2.840.10008.5.1.4.1.1.7")
    ds.file_meta.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID", "") or "1.2.3"
    ds.preamble = b"\x00" * 128
    ds.save_as(dst, enforce_file_format=False, implicit_vr=implicit, little_endian=True)


def read_header(path: Path) -> pydicom.Dataset:
    """The TAGS of one file. Files without the 128-byte preamble and 'DICM' (older writers) are read
    with force=True and kept only when Modality and SOPInstanceUID are plausible."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=TAGS)
    except InvalidDicomError:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=TAGS, force=True)
        if not _plausible(ds):
            raise InvalidDicomError("no DICOM preamble, and read without it the file has no plausible "
                                    "Modality/SOPInstanceUID") from None
    if "Modality" not in ds:
        raise InvalidDicomError("no Modality tag")
    return ds


def series_tilt_deg(members: list[Header]) -> float:
    """How far the slice stack leans: the gantry tilt the headers state (0018,1120), or the angle between
    the slice normal and the line through the first and last ImagePositionPatient, whichever is larger."""
    stated = max((abs(float(h.get("GantryDetectorTilt", 0) or 0)) for h in members), default=0.0)
    if len(members) < 2:
        return stated
    a = np.array(members[0].get("ImagePositionPatient", [0, 0, 0]), float)
    b = np.array(members[-1].get("ImagePositionPatient", [0, 0, 0]), float)
    step = b - a
    if np.linalg.norm(step) < 1e-6:
        return stated
    cos = abs(float(step @ members[0].normal)) / (np.linalg.norm(step) * np.linalg.norm(members[0].normal) or 1.0)
    return max(stated, float(np.degrees(np.arccos(min(1.0, cos)))))


def check_tilt(members: list[Header], tolerance_deg: float = 1.0) -> None:
    """A gantry-tilted (sheared) slice stack is refused: ITK would read it as if it were not sheared."""
    tilt = series_tilt_deg(members)
    if tilt > tolerance_deg:
        first = members[0].rel
        raise SampleError(Reason.OBLIQUE_ORIENTATION,
                          f"series starting at '{first}' is acquired with a gantry tilt of {tilt:.1f} degrees "
                          "(0018,1120 / slice positions off the slice normal): its slices are sheared, which "
                          "medbench does not resample; correct the tilt first (e.g. dcm2niix's tilt correction) "
                          "and register the corrected volume", first)


def check_series_geometry(members: list[Header], tilt_tolerance_deg: float = 1.0) -> None:
    """One orientation, slices stacked along their normal and evenly spaced, or a quarantine: a missing
    slice, a mixed series or a gantry tilt would otherwise get one wrong geometry for the whole volume."""
    first = members[0].rel
    iops = np.array([np.array(h.get("ImageOrientationPatient", [1, 0, 0, 0, 1, 0]), float) for h in members])
    if not np.allclose(iops, iops[0], atol=1e-3):
        kinds = len({tuple(np.round(r, 3)) for r in iops})
        raise SampleError(Reason.BAD_GEOMETRY, f"series starting at '{first}' mixes {kinds} slice orientations "
                          "(ImageOrientationPatient); split it into one series per orientation", first)
    check_tilt(members, tilt_tolerance_deg)
    if len(members) < 3:
        return
    pos = np.array([h.position for h in members])
    steps = np.diff(pos)
    step = float(np.median(steps))
    if abs(step) < 1e-6 or np.any(np.abs(steps - step) > max(0.1 * abs(step), 1e-3)):
        k = int(np.argmax(np.abs(steps - step)))
        raise SampleError(Reason.BAD_GEOMETRY, f"series starting at '{first}' is not evenly spaced: slices "
                          f"'{members[k].rel}' and '{members[k + 1].rel}' are {steps[k]:.3g} mm apart, the "
                          f"usual step is {step:.3g} mm (a missing or duplicated slice); complete the series", first)


def series_key(h: Header) -> str:
    """SeriesInstanceUID, or (when de-identification emptied it) the acquisition geometry."""
    uid = h.get("SeriesInstanceUID")
    if uid:
        return f"uid:{uid}"
    iop = tuple(np.round(np.array(h.get("ImageOrientationPatient", [0] * 6), float), 4))
    sp = tuple(np.round(np.array(h.get("PixelSpacing", [0, 0]), float), 4))
    return "geom:" + stable_id(h.get("FrameOfReferenceUID", ""), iop, sp, h.get("Rows"), h.get("Columns"),
                               str(Path(h.rel).parent))


def sort_series(headers: list[Header]) -> list[Header]:
    """Order slices by position along the slice normal (not file name, not InstanceNumber)."""
    return sorted(headers, key=lambda h: (h.position, h.rel))


def patient_key(h: Header, fallback: str) -> str:
    for tag in ("PatientID", "StudyInstanceUID", "FrameOfReferenceUID"):
        if h.get(tag):
            return f"{tag}:{h.get(tag)}"
    return fallback


def read_series(reader: Reader, files: list[str]) -> sitk.Image:
    """Pixels of an ordered file list (rescale slope/intercept applied by GDCM); multi-frame aware."""
    paths = [str(reader.ctx.resolve(f)) for f in files]
    if not all(has_preamble(Path(p)) for p in paths):
        with tempfile.TemporaryDirectory(prefix="medbench-dicom-") as tmp:
            fixed = []
            for i, p in enumerate(paths):
                fixed.append(str(Path(tmp) / f"{i:06d}.dcm") if not has_preamble(Path(p)) else p)
                if fixed[-1] != p:
                    with_preamble(Path(p), Path(fixed[-1]))
            return _read_paths(reader, fixed, files)
    return _read_paths(reader, paths, files)


def _read_paths(reader: Reader, paths: list[str], files: list[str]) -> sitk.Image:
    limit = reader.ctx.config.ingest.max_pixels
    try:
        if len(paths) == 1:
            img = read_volume(Path(paths[0]), files[0], limit, limits=reader.ctx.limits)
            if img.GetDimension() == 2:
                img = sitk.JoinSeries(img)
            return img
        sr = sitk.ImageSeriesReader()
        sr.SetFileNames(paths)
        return sr.Execute()
    except RuntimeError as exc:
        raise SampleError(Reason.CORRUPT_FILE, f"series starting at '{files[0]}' could not be decoded: "
                          f"{str(exc).strip().splitlines()[-1][:300]}", files[0]) from exc


def _group_key(reader: Reader, h: Header, fallback: str) -> str:
    if reader.ctx.source.entry.group_rule.kind == "dicom_patient":
        return patient_key(h, fallback)
    return reader.ctx.group_key(fallback)


class DicomSeriesReader(Reader):
    """Image series grouped by SeriesInstanceUID (or geometry), with a label volume per series."""

    format = "dicom_series"

    class Options(Reader.Options):
        label: str | None = None  # label volume path; '{series_dir}' = folder of the series

    def scan(self) -> Iterator[SampleRecord | Quarantined]:
        headers, bad = index_headers(self)
        yield from bad
        groups: dict[str, list[Header]] = defaultdict(list)
        for h in headers:
            if h.get("Modality") in IMAGE_MODALITIES:
                groups[series_key(h)].append(h)
        for key in sorted(groups):
            members = sort_series(groups[key])
            first = members[0].rel
            yield self.guarded(first, lambda: self._record(key, members), first)

    def _record(self, key: str, members: list[Header]) -> SampleRecord:
        cfg = self.ctx.config.standardize
        check_series_geometry(members, cfg.oblique_tolerance_deg)
        files = [h.rel for h in members]
        series_dir = str(Path(files[0]).parent)
        image = read_series(self, files)
        name = f"series_{stable_id(key, length=8)}"
        meta = {"files": files, "photometric": str(members[0].get("PhotometricInterpretation", ""))}
        if self.opts.label is None:
            meta.update(check_oblique(image, files[0], cfg.oblique, cfg.oblique_tolerance_deg))
        group = _group_key(self, members[0], series_dir)
        if self.opts.label is None:
            arr = sitk.GetArrayViewFromImage(image)
            check_finite(arr, files[0])
            lo, hi = intensity_range(arr)
            return SampleRecord(key=key, name=name, source_path=files[0], group_key=group, image_refs=files,
                                shape=list(image.GetSize()), spacing=list(image.GetSpacing()),
                                orientation=orientation_code(image.GetDirection()),
                                intensity_min=lo, intensity_max=hi, meta=meta)
        from pipelines.sources.volumes import scan_volume_pair
        label_ref = self.opts.label.format(series_dir=series_dir)
        rec = scan_volume_pair(self, files[0], label_ref, name, image=image, extra_refs=files[1:], meta=meta)
        rec.key, rec.group_key = key, group
        return rec

    def load(self, row: dict) -> LoadedSample:
        meta = json.loads(row["reader_meta"])
        image = read_series(self, meta["files"])
        layers = []
        if row["label_ref"]:
            label = read_volume(self.ctx.resolve(row["label_ref"]), row["label_ref"],
                                self.ctx.config.ingest.max_pixels, verify=False)
            names = {int(v): self.ctx.source.label_map.name_of(v) for v in row["label_values"]}
            layers.append(LabelLayer(label, names))
        return LoadedSample(dim=3, image=image, layers=layers, photometric=meta.get("photometric", ""))


def _image_index(headers: list[Header]) -> dict[str, Header]:
    return {str(h.get("SOPInstanceUID")): h for h in headers
            if h.get("Modality") in IMAGE_MODALITIES and h.get("SOPInstanceUID")}


def _objects_of(reader: Reader, modality: str) -> tuple[list[Quarantined], list[Header], dict[str, Header]]:
    """Unreadable files, the SEG/RTSTRUCT objects of the dataset, and its images by SOPInstanceUID."""
    headers, bad = index_headers(reader, reader.opts.pattern)
    return bad, [h for h in headers if h.get("Modality") == modality], _image_index(headers)


def _slice_lookup(members: list[Header]) -> tuple[np.ndarray, float]:
    pos = np.array([h.position for h in members])
    step = float(np.median(np.diff(pos))) if len(pos) > 1 else 1.0
    return pos, abs(step) or 1.0


class DicomSegReader(Reader):
    """DICOM SEG objects rasterized onto their referenced image grid, one layer per segment."""

    format = "dicom_seg"

    class Options(Reader.Options):
        pattern: str = "**/*"

    def scan(self) -> Iterator[SampleRecord | Quarantined]:
        bad, objects, images = _objects_of(self, "SEG")
        yield from bad
        for h in objects:
            yield self.guarded(h.rel, lambda: self._record(h, images), h.rel)

    def _referenced(self, seg_rel: str, images: dict[str, Header]) -> tuple[pydicom.Dataset, list[Header]]:
        seg = pydicom.dcmread(self.ctx.resolve(seg_rel))
        refs = [str(i.ReferencedSOPInstanceUID) for s in getattr(seg, "ReferencedSeriesSequence", [])
                for i in s.ReferencedInstanceSequence]
        missing = [r for r in refs if r not in images]
        if not refs or missing:
            raise SampleError(Reason.REFERENCED_IMAGES_MISSING,
                              f"SEG '{seg_rel}' references {len(refs)} image(s), {len(missing)} of them not in the "
                              "dataset; add the referenced series next to it", seg_rel)
        return seg, sort_series([images[r] for r in dict.fromkeys(refs)])

    def _rasterize(self, seg: pydicom.Dataset, members: list[Header], image: sitk.Image) -> list[LabelLayer]:
        frames = seg.pixel_array
        if frames.ndim == 2:
            frames = frames[None]
        pos, step = _slice_lookup(members)
        normal = members[0].normal
        segments = {int(s.SegmentNumber): str(s.SegmentLabel) for s in seg.SegmentSequence}
        vols = {n: np.zeros(image.GetSize()[::-1], np.uint8) for n in segments}
        shared = getattr(seg, "SharedFunctionalGroupsSequence", [None])[0]
        for i, fg in enumerate(seg.PerFrameFunctionalGroupsSequence):
            seg_no = int(fg.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
            plane = getattr(fg, "PlanePositionSequence", None) or getattr(shared, "PlanePositionSequence", None)
            p = float(np.array(plane[0].ImagePositionPatient, float) @ normal)
            k = int(np.argmin(np.abs(pos - p)))
            if abs(pos[k] - p) > step / 2:
                raise SampleError(Reason.GRID_MISMATCH, f"SEG frame {i} lies at {p:.2f} mm, on no referenced slice")
            if frames[i].shape != vols[seg_no].shape[1:]:
                raise SampleError(Reason.GRID_MISMATCH,
                                  f"SEG frame {i} is {frames[i].shape}, image slices are {vols[seg_no].shape[1:]}")
            vols[seg_no][k] |= (frames[i] > 0).astype(np.uint8)
        layers = []
        for n, vol in vols.items():
            img = sitk.GetImageFromArray(vol)
            img.CopyInformation(image)
            layers.append(LabelLayer(img, {1: segments[n]}))
        return layers

    def _record(self, h: Header, images: dict[str, Header]) -> SampleRecord:
        seg, members = self._referenced(h.rel, images)
        for s in seg.SegmentSequence:
            self.ctx.check_label(str(s.SegmentLabel), h.rel)
        cfg = self.ctx.config.standardize
        check_tilt(members, cfg.oblique_tolerance_deg)
        files = [m.rel for m in members]
        image = read_series(self, files)
        oblique = check_oblique(image, files[0], cfg.oblique, cfg.oblique_tolerance_deg)
        layers = self._rasterize(seg, members, image)
        arr = sitk.GetArrayViewFromImage(image)
        check_finite(arr, files[0])
        lo, hi = intensity_range(arr)
        labels = [lay.names[1] for lay in layers if present_values(sitk.GetArrayViewFromImage(lay.data))]
        if not labels:
            raise SampleError(Reason.EMPTY_MASK, f"SEG '{h.rel}' has no foreground pixel", h.rel)
        return SampleRecord(key=h.rel, name=Path(h.rel).stem, source_path=h.rel,
                            group_key=_group_key(self, members[0], h.rel), image_refs=files, label_ref=h.rel,
                            labels=sorted(set(labels)), shape=list(image.GetSize()),
                            spacing=list(image.GetSpacing()), orientation=orientation_code(image.GetDirection()),
                            intensity_min=lo, intensity_max=hi, meta={"files": files, **oblique})

    def load(self, row: dict) -> LoadedSample:
        headers = [Header(f, pydicom.dcmread(self.ctx.resolve(f), stop_before_pixels=True, specific_tags=TAGS))
                   for f in json.loads(row["reader_meta"])["files"]]
        seg = pydicom.dcmread(self.ctx.resolve(row["label_ref"]))
        image = read_series(self, [h.rel for h in headers])
        return LoadedSample(dim=3, image=image, layers=self._rasterize(seg, sort_series(headers), image))


class RtStructReader(Reader):
    """RT Structure Sets: each ROI's contour polygons filled on the referenced image slices."""

    format = "rtstruct"

    class Options(Reader.Options):
        pattern: str = "**/*"

    def scan(self) -> Iterator[SampleRecord | Quarantined]:
        bad, objects, images = _objects_of(self, "RTSTRUCT")
        yield from bad
        for h in objects:
            side: list[Quarantined] = []
            rec = self.guarded(h.rel, lambda: self._record(h, images, side), h.rel)
            yield from side
            yield rec

    def _plan(self, rs: pydicom.Dataset, images: dict[str, Header], rel: str,
              side: list[Quarantined] | None) -> tuple[list[Header], dict[int, str]]:
        """The image slices to build and which ROIs can be drawn on them (others quarantined)."""
        names = {int(r.ROINumber): str(r.ROIName) for r in rs.StructureSetROISequence}
        frame_uids = {str(r.FrameOfReferenceUID) for r in getattr(rs, "ReferencedFrameOfReferenceSequence", [])}
        members = sort_series([h for h in images.values()
                               if not frame_uids or str(h.get("FrameOfReferenceUID")) in frame_uids])
        if not members:
            raise SampleError(Reason.REFERENCED_IMAGES_MISSING,
                              f"RTSTRUCT '{rel}' references images none of which are in the dataset", rel)
        present = {str(m.get("SOPInstanceUID")) for m in members}
        pos, step = _slice_lookup(members)
        drawable: dict[int, str] = {}
        for rc in rs.ROIContourSequence:
            num = int(rc.ReferencedROINumber)
            name = names.get(num, f"ROI {num}")
            contours = list(getattr(rc, "ContourSequence", []))
            def note(reason, msg):
                if side is not None:
                    side.append(Quarantined(rel, reason, f"RTSTRUCT '{rel}' ROI '{name}': {msg}"))
            if name not in self.ctx.source.label_map.names:
                note(Reason.UNKNOWN_LABEL, "not in the label map; add it there or to 'ignore'")
                continue
            if not contours:
                note(Reason.EMPTY_ROI, "has no contour")
                continue
            hits = 0
            for c in contours:
                ref = [str(i.ReferencedSOPInstanceUID) for i in getattr(c, "ContourImageSequence", [])]
                z = np.array(c.ContourData, float).reshape(-1, 3)[:, :] @ members[0].normal
                on_slice = (ref and ref[0] in present) or (np.abs(pos - z.mean()).min() <= step / 2 if len(pos) > 1
                                                          else abs(pos[0] - z.mean()) < 0.5)
                hits += bool(on_slice)
            if hits < len(contours):
                note(Reason.REFERENCED_IMAGES_MISSING,
                     f"{len(contours) - hits} of {len(contours)} contour(s) lie on image slices missing from the "
                     "dataset" + ("" if hits else "; nothing can be drawn"))
            if hits:
                drawable[num] = name
        for num, name in names.items():
            if num not in {int(rc.ReferencedROINumber) for rc in rs.ROIContourSequence}:
                if side is not None:
                    side.append(Quarantined(rel, Reason.EMPTY_ROI, f"RTSTRUCT '{rel}' ROI '{name}': has no contour"))
        return members, drawable

    def _rasterize(self, rs: pydicom.Dataset, members: list[Header], image: sitk.Image,
                   drawable: dict[int, str]) -> list[LabelLayer]:
        size = image.GetSize()
        pos, step = _slice_lookup(members)
        direction = np.array(image.GetDirection()).reshape(3, 3)
        to_index = np.linalg.inv(direction @ np.diag(image.GetSpacing()))
        origin = np.array(image.GetOrigin())
        layers = []
        for rc in rs.ROIContourSequence:
            num = int(rc.ReferencedROINumber)
            if num not in drawable:
                continue
            vol = np.zeros(size[::-1], np.uint8)
            for c in getattr(rc, "ContourSequence", []):
                pts = np.array(c.ContourData, float).reshape(-1, 3)
                idx = (pts - origin) @ to_index.T  # continuous (col, row, slice)
                k = int(round(float(np.median(idx[:, 2]))))
                if not 0 <= k < size[2] or len(pts) < 3:
                    continue
                poly = np.round(idx[:, :2]).astype(np.int32)
                layer = np.zeros(size[1::-1], np.uint8)
                cv2.fillPoly(layer, [poly], 1)
                vol[k] ^= layer  # XOR: inner contours cut holes, as RTSTRUCT intends
            img = sitk.GetImageFromArray(vol)
            img.CopyInformation(image)
            layers.append(LabelLayer(img, {1: drawable[num]}))
        return layers

    def _record(self, h: Header, images: dict[str, Header], side: list[Quarantined]) -> SampleRecord:
        rs = pydicom.dcmread(self.ctx.resolve(h.rel))
        members, drawable = self._plan(rs, images, h.rel, side)
        if not drawable:
            raise SampleError(Reason.REFERENCED_IMAGES_MISSING,
                              f"RTSTRUCT '{h.rel}': no ROI has a contour on an image present in the dataset", h.rel)
        files = [m.rel for m in members]
        cfg = self.ctx.config.standardize
        check_tilt(members, cfg.oblique_tolerance_deg)
        image = read_series(self, files)
        oblique = check_oblique(image, files[0], cfg.oblique, cfg.oblique_tolerance_deg)
        layers = self._rasterize(rs, members, image, drawable)
        labels = [lay.names[1] for lay in layers if present_values(sitk.GetArrayViewFromImage(lay.data))]
        if not labels:
            raise SampleError(Reason.EMPTY_MASK, f"RTSTRUCT '{h.rel}': contours rasterize to no pixel", h.rel)
        arr = sitk.GetArrayViewFromImage(image)
        lo, hi = intensity_range(arr)
        return SampleRecord(key=h.rel, name=Path(h.rel).stem, source_path=h.rel,
                            group_key=_group_key(self, members[0], h.rel), image_refs=files, label_ref=h.rel,
                            labels=sorted(set(labels)), shape=list(image.GetSize()),
                            spacing=list(image.GetSpacing()), orientation=orientation_code(image.GetDirection()),
                            intensity_min=lo, intensity_max=hi,
                            meta={"files": files, "rois": {str(k): v for k, v in drawable.items()}, **oblique})

    def load(self, row: dict) -> LoadedSample:
        meta = json.loads(row["reader_meta"])
        headers = sort_series([Header(f, pydicom.dcmread(self.ctx.resolve(f), stop_before_pixels=True,
                                                         specific_tags=TAGS)) for f in meta["files"]])
        rs = pydicom.dcmread(self.ctx.resolve(row["label_ref"]))
        image = read_series(self, [h.rel for h in headers])
        drawable = {int(k): v for k, v in meta["rois"].items()}
        return LoadedSample(dim=3, image=image, layers=self._rasterize(rs, headers, image, drawable))
