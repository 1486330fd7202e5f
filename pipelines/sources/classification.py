"""2D classification readers: class-per-folder trees, CSV/TSV manifests, MedMNIST-style .npz."""

from __future__ import annotations

import csv
import fnmatch
import io
import string
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from pydantic import field_validator

from pipelines.imageio import read_image
from pipelines.sourcefiles import DEFAULT_LIMITS, Limits, check_file, read_bytes
from pipelines.sources.base import (
    LoadedSample,
    Quarantined,
    Reader,
    Reason,
    SampleError,
    SampleRecord,
    intensity_range,
)
from pipelines.textio import decode_text

# image files Pillow knows that are not in ingest.image_extensions: reported, never skipped silently
OTHER_IMAGE_SUFFIXES = frozenset({".webp", ".jp2", ".j2k", ".jpx", ".ppm", ".pgm", ".pbm", ".pnm", ".ico",
                                  ".psd", ".tga", ".dib", ".pcx", ".heic", ".heif", ".avif", ".jfif", ".jpe"})


def unsupported_image(reader: Reader, path: Path) -> Quarantined | None:
    """A quarantine row for an image file whose extension medbench does not read, else None."""
    suffix = path.suffix.lower()
    if suffix in reader.ctx.config.ingest.image_extensions or suffix not in OTHER_IMAGE_SUFFIXES:
        return None
    rel = reader.ctx.rel(path)
    return Quarantined(rel, Reason.UNSUPPORTED_FORMAT,
                       f"'{rel}' is a {suffix} image, which medbench does not read (ingest.image_extensions: "
                       f"{', '.join(reader.ctx.config.ingest.image_extensions)}); convert it to PNG, or add "
                       f"'{suffix}' to ingest.image_extensions if Pillow reads it")


def _image_record(reader: Reader, path: Path, labels: list[str], key: str, group_key: str,
                  meta: dict | None = None) -> SampleRecord:
    ctx = reader.ctx
    rel = ctx.rel(path)
    check_file(path, rel, ctx.limits)  # what the file is decides first (a FIFO, a loop, unreadable)
    ctx.check_inside(path, rel)
    for label in labels:
        ctx.check_label(label, rel)
    arr = read_image(path, ctx.config.ingest.max_pixels, rel, ctx.limits)
    lo, hi = intensity_range(arr)
    return SampleRecord(key=key, name=path.stem, source_path=rel, group_key=group_key,
                        image_refs=[rel], labels=labels, shape=list(arr.shape),
                        intensity_min=lo, intensity_max=hi, meta=meta or {})


class _ImageFileReader(Reader):
    """Readers whose sample is one image file with image-level labels."""

    def load(self, row: dict) -> LoadedSample:
        path = self.ctx.resolve(row["image_refs"][0])
        return LoadedSample(dim=2, image=read_image(path, self.ctx.config.ingest.max_pixels,
                                                    row["image_refs"][0], self.ctx.limits),
                            labels=list(row["labels"]))


class ImageFolderReader(_ImageFileReader):
    """root/<class name>/<image>: the folder name is the label."""

    format = "image_folder"

    class Options(Reader.Options):
        exclude: list[str] = []  # glob patterns (file name or path under the root) of files that are not images

    def scan(self) -> Iterator[SampleRecord | Quarantined]:
        exts = self.ctx.config.ingest.image_extensions
        for cls_dir in sorted(p for p in self.ctx.root.iterdir() if p.is_dir()):
            for path in sorted(cls_dir.rglob("*")):
                if (other := unsupported_image(self, path)) is not None:
                    yield other
                    continue
                if path.suffix.lower() not in exts or not path.is_file():
                    continue  # a FIFO, device, loop or dangling link: reported by ingest's walk of the root
                rel = self.ctx.rel(path)
                pat = next((p for p in self.opts.exclude if fnmatch.fnmatchcase(path.name, p)
                            or fnmatch.fnmatchcase(rel, p)), None)
                if pat is not None:
                    yield Quarantined(rel, Reason.EXCLUDED_FILE, f"'{rel}' is not scanned as an image: it matches "
                                      f"the exclude pattern {pat!r}")
                    continue
                yield self.guarded(rel, lambda: _image_record(
                    self, path, [cls_dir.name], rel, self.ctx.group_key(rel)), rel)


class CsvManifestReader(_ImageFileReader):
    """A CSV/TSV listing image paths with one label column, a delimited list, or 0/1 columns."""

    format = "csv_manifest"

    class Options(Reader.Options):
        file: str
        path_column: str = "path"
        path_template: str | None = None  # an image path built from the row's columns: "images/{image_id}.bmp"
        image_root: str = "."
        label_column: str | None = None
        label_separator: str | None = None
        label_columns: list[str] | None = None  # multi-label as 0/1 columns
        encoding: str | None = None  # default: UTF-8, else detected (charset-normalizer)

        @field_validator("path_template")
        @classmethod
        def _template(cls, v: str | None) -> str | None:
            if v is not None:
                try:
                    fields = [f for _, f, _, _ in string.Formatter().parse(v) if f is not None]
                except ValueError as exc:
                    raise ValueError(f"path_template {v!r} is not a template: {exc}") from exc
                if not all(fields):
                    raise ValueError(f"path_template {v!r} needs named fields, e.g. images/{{image_id}}.bmp")
            return v

    def _labels(self, row: dict) -> list[str]:
        o = self.opts
        if o.label_columns:
            return [c for c in o.label_columns if str(row[c]).strip() in ("1", "1.0", "True", "true")]
        value = str(row[o.label_column] or "").strip()
        if o.label_separator:
            return [v.strip() for v in value.split(o.label_separator) if v.strip()]
        return [value] if value else []

    def scan(self) -> Iterator[SampleRecord | Quarantined]:
        o = self.opts
        try:
            manifest = self.ctx.resolve(o.file)
            header, rows, bad = read_manifest(manifest, o.file, o.encoding, self.ctx.limits)
        except SampleError as exc:
            yield Quarantined(exc.path or o.file, exc.reason, str(exc))
            return
        yield from bad
        fields = [f for _, f, _, _ in string.Formatter().parse(o.path_template or "") if f]
        needed = (fields if o.path_template else [o.path_column]) + ([o.label_column] if o.label_column else []) \
            + (o.label_columns or [])
        missing = [c for c in needed if c not in header]
        if missing:
            yield Quarantined(o.file, Reason.BAD_ANNOTATION,
                              f"manifest {o.file} lacks column(s) {missing}; it has {header}")
            return
        group_col = self.ctx.source.entry.group_rule.column
        for i, row in rows:
            ref = str(Path(o.image_root) / (o.path_template.format(**row).strip() if o.path_template
                                             else row[o.path_column]))

            def one(row=row, ref=ref, i=i) -> SampleRecord:
                path = self.ctx.resolve(ref)
                labels = self._labels(row)
                if not labels and self.ctx.source.entry.task_type == "cls":
                    raise SampleError(Reason.BAD_ANNOTATION, f"line {i} of {o.file} has no label", ref)
                rel = self.ctx.rel(path)
                gval = row[group_col] if group_col and group_col in row else None
                return _image_record(self, path, labels, rel, self.ctx.group_key(rel, gval),
                                     {"manifest_row": int(i)})
            yield self.guarded(ref, one, ref)


def read_manifest(path: Path, rel: str, encoding: str | None,
                  limits: Limits = DEFAULT_LIMITS) -> tuple[list[str], list[tuple[int, dict]], list[Quarantined]]:
    """Header, (line number, row) pairs and one quarantine row per line whose field count differs from
    the header's. The delimiter is a tab for .tsv/.tab files, else a comma."""
    text, _ = decode_text(read_bytes(path, rel, limits), rel, encoding)
    if not text.strip():
        raise SampleError(Reason.BAD_ANNOTATION, f"manifest {rel} is empty; it needs a header line and one "
                          "row per image", rel)
    sep = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep)
    try:
        header = [h.strip() for h in next(reader)]
        rows, bad = [], []
        for fields in reader:
            line = reader.line_num
            if not any(f.strip() for f in fields):
                continue
            if len(fields) != len(header):
                bad.append(Quarantined(f"{rel}:{line}", Reason.BAD_ANNOTATION,
                                       f"line {line} of {rel} has {len(fields)} field(s), the header has "
                                       f"{len(header)}; fix the row (quote fields holding '{sep}')"))
                continue
            rows.append((line, dict(zip(header, fields))))
    except csv.Error as exc:
        raise SampleError(Reason.BAD_ANNOTATION, f"manifest {rel} is not valid CSV: {exc}", rel) from exc
    return header, rows, bad


class NpzReader(Reader):
    """MedMNIST-style arrays: <split>_images (N, H, W[, C]) and <split>_labels (N, 1 or K)."""

    format = "npz"

    class Options(Reader.Options):
        file: str
        splits: list[str] = ["train", "val", "test"]
        max_per_split: int | None = None

    def scan(self) -> Iterator[SampleRecord | Quarantined]:
        o = self.opts
        try:
            path = self.ctx.resolve(o.file)
            check_file(path, o.file, self.ctx.limits)
            npz = np.load(path, allow_pickle=False)
        except SampleError as exc:
            yield Quarantined(exc.path or o.file, exc.reason, str(exc))
            return
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            yield Quarantined(o.file, Reason.CORRUPT_FILE, f"'{o.file}' is not a readable .npz archive "
                              f"({type(exc).__name__}: {exc}); re-download or re-save it with numpy.savez")
            return
        with npz:
            for split in o.splits:
                if f"{split}_images" not in npz:
                    continue
                try:
                    images, labels = self._arrays(npz, split)
                except SampleError as exc:
                    yield Quarantined(o.file, exc.reason, str(exc), f"{o.file}#{split}")
                    continue
                yield from self._split(split, images, labels)

    def _arrays(self, npz, split: str) -> tuple[np.ndarray, np.ndarray]:
        """The split's images and labels, or a SampleError saying which array is missing or unreadable."""
        o = self.opts
        if f"{split}_labels" not in npz:
            raise SampleError(Reason.BAD_ANNOTATION, f"'{o.file}' has {split}_images but no {split}_labels; "
                              f"add the labels array (arrays present: {sorted(npz.files)})", o.file)
        try:
            images, labels = npz[f"{split}_images"], npz[f"{split}_labels"]
        except ValueError as exc:  # object arrays need pickle, which is never enabled for data files
            raise SampleError(Reason.CORRUPT_FILE, f"'{o.file}' {split} arrays cannot be loaded without pickle "
                              f"({exc}); save numeric arrays, not object arrays", o.file) from exc
        except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            raise SampleError(Reason.CORRUPT_FILE, f"'{o.file}' {split} arrays are truncated or corrupt "
                              f"({type(exc).__name__}: {exc})", o.file) from exc
        if images.dtype.kind not in "uifb" or labels.dtype.kind not in "uifb":
            raise SampleError(Reason.CORRUPT_FILE, f"'{o.file}' {split} arrays have dtypes {images.dtype}/"
                              f"{labels.dtype}; images and labels must be numeric", o.file)
        if images.ndim not in (3, 4):
            raise SampleError(Reason.CORRUPT_FILE, f"'{o.file}' {split}_images has shape {images.shape}; "
                              "expected (N, H, W) or (N, H, W, C)", o.file)
        return images, labels

    def _split(self, split: str, images: np.ndarray, labels: np.ndarray) -> Iterator[SampleRecord | Quarantined]:
        o = self.opts
        lm = self.ctx.source.label_map
        multi = self.ctx.source.entry.task_type == "mcls"
        n = len(images) if o.max_per_split is None else min(o.max_per_split, len(images))
        for i in range(n):
            key = f"{o.file}#{split}/{i}"
            if i >= len(labels):
                yield Quarantined(o.file, Reason.BAD_ANNOTATION, f"{key}: {split}_labels has only {len(labels)} "
                                  f"rows for {len(images)} images; this image has no label", key)
                continue
            lab = np.atleast_1d(labels[i])
            if not np.isfinite(lab.astype(float)).all():
                yield Quarantined(o.file, Reason.BAD_ANNOTATION, f"{key}: label {lab.tolist()} is not finite", key)
                continue
            values = [int(k) for k in np.nonzero(lab)[0]] if multi else [int(lab[0])]
            names = [lm.name_of(v) for v in values]
            if any(n_ is None for n_ in names):
                yield Quarantined(o.file, Reason.UNKNOWN_LABEL,
                                  f"{key}: label value(s) {values} not in the label map 'values'", key)
                continue
            img = images[i]
            if img.dtype.kind == "f" and not np.isfinite(img).all():
                yield Quarantined(o.file, Reason.NON_FINITE, f"{key} has NaN/Inf pixels; re-export without them", key)
                continue
            lo, hi = intensity_range(img)
            yield SampleRecord(key=key, name=f"{split}_{i:05d}", source_path=o.file,
                               group_key=key, image_refs=[o.file], labels=names,
                               label_values=values, shape=list(img.shape),
                               intensity_min=lo, intensity_max=hi,
                               meta={"split": split, "index": i})

    def load(self, row: dict) -> LoadedSample:
        import json
        meta = json.loads(row["reader_meta"])
        with np.load(self.ctx.resolve(self.opts.file), allow_pickle=False) as npz:
            img = np.ascontiguousarray(npz[f"{meta['split']}_images"][meta["index"]])
        return LoadedSample(dim=2, image=img, labels=list(row["labels"]))
