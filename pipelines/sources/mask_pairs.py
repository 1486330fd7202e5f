"""2D segmentation: image + mask files matched by a name rule; binary, indexed or instance masks.

How a mask is found for an image, in the layouts datasets ship in:

* a template (``mask_name``) of the image's ``{stem}``, ``{name}`` or ``{key}``: ``{stem}_lesion.bmp``;
* ``{key}`` is the capture group of ``image_key``, a regex over the image's file name, for names that differ
  beyond a suffix (DRIVE's ``21_training.tif`` -> ``21_manual1.gif``: ``image_key: "^(\\d+)_training"``,
  ``mask_name: "{key}_manual1.gif"``);
* a template holding ``*``, ``?`` or ``[...]`` is a glob under ``masks``; several matches are one instance each
  (``mode: instances``), e.g. Data Science Bowl 2018's ``masks/<id>/*.png``;
* ``pairs``: a CSV of (image, mask) paths relative to the dataset root, instead of scanning the image folder.

Files in the image folder that are not images of the dataset (annotations stored beside the images, files an
``exclude`` pattern names, names ``image_key`` does not match) are left out and reported one quarantine row each
(reason ``excluded_file``), never scanned as images nor dropped silently.
"""

from __future__ import annotations

import fnmatch
import glob
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import field_validator

from pipelines.imageio import read_image, read_mask
from pipelines.sources.base import (
    LabelLayer,
    LoadedSample,
    Quarantined,
    Reader,
    Reason,
    SampleError,
    SampleRecord,
    intensity_range,
    named_values,
)
from pipelines.sources.classification import read_manifest, unsupported_image

GLOB_CHARS = re.compile(r"[*?\[]")


class MaskPairsReader(Reader):
    format = "mask_pairs"

    class Options(Reader.Options):
        images: str = "images"
        masks: str = "masks"
        mask_name: str = "{stem}.png"  # {stem}, {name} (file name with extension), {key} (image_key's group); glob ok
        image_key: str | None = None  # regex over the image file name: group 1 or (?P<key>...) gives {key}
        pairs: str | None = None  # CSV/TSV of image and mask paths (relative to the dataset root)
        image_column: str = "image"
        mask_column: str = "mask"
        exclude: list[str] = []  # glob patterns (file name or path under `images`) of files that are not images
        mode: Literal["indexed", "binary", "instances"] = "indexed"
        # indexed: pixel value = label value; binary: threshold to {0, 1}; instances: each non-zero value (or
        # each file a glob matches) is one instance of the label the label map gives value 1
        threshold: int = 127
        invert: bool = False  # binary masks whose foreground is the dark value
        encoding: str | None = None  # of the pairs CSV (default: UTF-8, else detected)

        @field_validator("image_key")
        @classmethod
        def _regex(cls, v: str | None) -> str | None:
            if v is not None:
                try:
                    rx = re.compile(v)
                except re.error as exc:
                    raise ValueError(f"image_key is not a regex: {exc}") from exc
                if rx.groups < 1:
                    raise ValueError("image_key needs a capture group: the part of the file name masks are named by")
            return v

        @field_validator("mask_name")
        @classmethod
        def _template(cls, v: str) -> str:
            try:
                v.format(stem="s", name="n", key="k")
            except (KeyError, IndexError, ValueError) as exc:
                raise ValueError(f"mask_name {v!r} may use only {{stem}}, {{name}} and {{key}}: {exc}") from exc
            return v

    # ---- naming -------------------------------------------------------------------------------------------
    def _key(self, name: str) -> str | None:
        """The image_key capture of a file name (None: the name does not match)."""
        m = re.search(self.opts.image_key or "", name)
        if m is None:
            return None
        return m.groupdict().get("key") or m.group(1)

    def _mask_refs(self, img: Path) -> list[str]:
        """The mask file(s) of one image, relative to the dataset root ([] when none exists)."""
        o, ctx = self.opts, self.ctx
        key = self._key(img.name) if o.image_key else img.stem
        is_glob = bool(GLOB_CHARS.search(o.mask_name))
        esc = glob.escape if is_glob else (lambda s: s)
        name = o.mask_name.format(stem=esc(img.stem), name=esc(img.name), key=esc(key or ""))
        mdir = ctx.root / o.masks
        if not is_glob:
            return [str(Path(o.masks) / name)] if (mdir / name).exists() else []
        return sorted(ctx.rel(p) for p in mdir.glob(name) if p.is_file())

    def _expected_mask(self, img: Path) -> str | None:
        """Where a plain mask template says the image's mask should be (None for a glob or an unmatched key)."""
        o = self.opts
        key = self._key(img.name) if o.image_key else img.stem
        if GLOB_CHARS.search(o.mask_name) or key is None:
            return None
        return str(Path(o.masks) / o.mask_name.format(stem=img.stem, name=img.name, key=key))

    # ---- one sample ---------------------------------------------------------------------------------------
    def _mask_values(self, raw: np.ndarray) -> np.ndarray:
        if self.opts.mode == "binary":
            fg = raw > self.opts.threshold
            return (~fg if self.opts.invert else fg).astype(np.uint8)
        return raw

    def _instance_label(self, where: str) -> str:
        name = self.ctx.source.label_map.name_of(1)
        if name is None:
            raise SampleError(Reason.UNKNOWN_LABEL, "mode 'instances' takes the structure's name from value 1 of the "
                              f"label map {self.ctx.source.label_map_path.name}; add values: {{1: <structure>}}", where)
        return name

    def _instances(self, refs: list[str], limit: int) -> np.ndarray:
        """One instance-id array: a single file's non-zero values, or file k's foreground as id k."""
        if len(refs) == 1:
            raw = read_mask(self.ctx.resolve(refs[0]), limit, refs[0], self.ctx.limits)
            if raw.dtype.kind not in "ui":
                raise SampleError(Reason.BAD_ANNOTATION, f"instance mask '{refs[0]}' holds {raw.dtype} values; an "
                                  "instance map needs integer ids (0 = background)", refs[0])
            return raw.astype(np.int32)
        out = None
        for k, ref in enumerate(refs, start=1):
            fg = self._mask_values_binary(read_mask(self.ctx.resolve(ref), limit, ref, self.ctx.limits))
            if out is None:
                out = np.zeros(fg.shape, np.int32)
            elif fg.shape != out.shape:
                raise SampleError(Reason.GRID_MISMATCH, f"instance mask '{ref}' is {fg.shape[1]}x{fg.shape[0]}, the "
                                  f"first one {out.shape[1]}x{out.shape[0]}; every mask must have the image's size", ref)
            out[fg & (out == 0)] = k
        return out

    def _mask_values_binary(self, raw: np.ndarray) -> np.ndarray:
        fg = raw > self.opts.threshold
        return ~fg if self.opts.invert else fg

    def _labels(self, refs: list[str], limit: int) -> np.ndarray:
        if self.opts.mode == "instances":
            return self._instances(refs, limit)
        return self._mask_values(read_mask(self.ctx.resolve(refs[0]), limit, refs[0], self.ctx.limits))

    def _record(self, img: Path, refs: list[str]) -> SampleRecord:
        ctx, o = self.ctx, self.opts
        rel = ctx.rel(img)
        limit = ctx.config.ingest.max_pixels
        image = read_image(img, limit, rel, ctx.limits, exif="refuse")  # a bad image is named before a missing mask
        if not refs:
            where = self._expected_mask(img) or rel
            raise SampleError(Reason.MISSING_FILE, f"no mask for image '{rel}': '{o.mask_name}' under "
                              f"'{o.masks}' matches nothing; fix 'mask_name'/'image_key' (docs/registering_datasets.md)",
                              where)
        if len(refs) > 1 and o.mode != "instances":
            shown = ", ".join(refs[:3]) + (" ..." if len(refs) > 3 else "")
            raise SampleError(Reason.BAD_ANNOTATION, f"image '{rel}' matches {len(refs)} mask files ({shown}); narrow "
                              "'mask_name', or set mode: instances when each file is one instance", rel)
        ctx.check_inside(img, rel)
        mask = self._labels(refs, limit)
        if mask.shape[:2] != image.shape[:2]:
            raise SampleError(Reason.GRID_MISMATCH,
                              f"mask '{refs[0]}' is {mask.shape[1]}x{mask.shape[0]} but image '{rel}' is "
                              f"{image.shape[1]}x{image.shape[0]}; masks must have the image's size", rel)
        lm = ctx.source.label_map
        meta: dict[str, object] = {"mask_refs": refs} if len(refs) > 1 else {}
        if o.mode == "instances":
            n = len(np.unique(mask[mask > 0]))
            if n == 0:
                raise SampleError(Reason.EMPTY_MASK, f"mask '{refs[0]}' has no foreground", refs[0])
            values, labels = [1], [self._instance_label(refs[0])]
            meta["instances"] = int(n)
        else:
            values = named_values(mask, ctx, refs[0], "mask")
            labels = sorted({lm.name_of(v) for v in values})
        lo, hi = intensity_range(image)
        return SampleRecord(key=rel, name=img.stem, source_path=rel, group_key=ctx.group_key(rel),
                            image_refs=[rel], label_ref=refs[0], labels=labels, label_values=values,
                            shape=list(image.shape), intensity_min=lo, intensity_max=hi, meta=meta)

    # ---- scanning -----------------------------------------------------------------------------------------
    def _excluded_by(self, img: Path, img_dir: Path) -> str:
        """Why a file of the image folder is not an image of the dataset ('' when it is)."""
        o = self.opts
        under = img.relative_to(img_dir).as_posix()
        for pat in o.exclude:
            if fnmatch.fnmatchcase(img.name, pat) or fnmatch.fnmatchcase(under, pat):
                return f"matches the exclude pattern {pat!r}"
        if o.image_key and self._key(img.name) is None:
            return f"its name does not match image_key {o.image_key!r}"
        return ""

    def scan(self) -> Iterator[SampleRecord | Quarantined]:
        if self.opts.pairs:
            yield from self._scan_pairs()
            return
        img_dir = self.ctx.resolve(self.opts.images)
        exts = self.ctx.config.ingest.image_extensions
        files = []
        for p in sorted(img_dir.iterdir()):
            if (other := unsupported_image(self, p)) is not None:  # an image format medbench does not read
                yield other
            elif p.suffix.lower() in exts and p.is_file():
                files.append(p)
        kept: list[tuple[Path, list[str]]] = []
        for img in files:
            why = self._excluded_by(img, img_dir)
            if why:
                yield Quarantined(self.ctx.rel(img), Reason.EXCLUDED_FILE, f"'{self.ctx.rel(img)}' is not scanned as "
                                  f"an image: {why}")
                continue
            kept.append((img, self._mask_refs(img)))
        mask_of = {m: self.ctx.rel(img) for img, refs in kept for m in refs}
        for img, refs in kept:
            rel = self.ctx.rel(img)
            if rel in mask_of and mask_of[rel] != rel:  # an annotation stored beside its image
                yield Quarantined(rel, Reason.EXCLUDED_FILE, f"'{rel}' is not scanned as an image: it is the mask "
                                  f"of '{mask_of[rel]}'")
                continue
            yield self.guarded(rel, lambda img=img, refs=refs: self._record(img, refs), rel)

    def _scan_pairs(self) -> Iterator[SampleRecord | Quarantined]:
        o = self.opts
        try:
            header, rows, bad = read_manifest(self.ctx.resolve(o.pairs), o.pairs, o.encoding)
        except SampleError as exc:
            yield Quarantined(exc.path or o.pairs, exc.reason, str(exc))
            return
        yield from bad
        missing = [c for c in (o.image_column, o.mask_column) if c not in header]
        if missing:
            yield Quarantined(o.pairs, Reason.BAD_ANNOTATION, f"pairs file {o.pairs} lacks column(s) {missing}; it has "
                              f"{header}; fix 'image_column'/'mask_column'")
            return
        for line, row in rows:
            ref, mref = row[o.image_column].strip(), row[o.mask_column].strip()

            def one(ref=ref, mref=mref) -> SampleRecord:
                img = self.ctx.resolve(ref)
                self.ctx.resolve(mref)
                return self._record(img, [self.ctx.rel(self.ctx.root / mref)])
            yield self.guarded(f"{o.pairs}:{line}", one, ref)

    def empty_hint(self) -> str:
        o = self.opts
        img_dir = self.ctx.root / o.images
        if o.pairs or not img_dir.is_dir():
            return ""
        exts = set(self.ctx.config.ingest.image_extensions)
        other = sorted({p.suffix.lower() or "(none)" for p in img_dir.iterdir() if p.is_file()
                        and p.suffix.lower() not in exts})
        return (f"'{o.images}' holds files with extension(s) {', '.join(other)}, which ingest.image_extensions does "
                "not list" if other else "")

    # ---- pixels -------------------------------------------------------------------------------------------
    def _refs(self, row: dict) -> list[str]:
        meta = json.loads(row.get("reader_meta") or "{}")
        return list(meta.get("mask_refs") or [row["label_ref"]])

    def load(self, row: dict) -> LoadedSample:
        limit = self.ctx.config.ingest.max_pixels
        image = read_image(self.ctx.resolve(row["image_refs"][0]), limit, row["image_refs"][0], self.ctx.limits,
                           exif="refuse")
        mask = self._labels(self._refs(row), limit)
        if self.opts.mode == "instances":
            label = self._instance_label(row["label_ref"])
            names = {int(v): label for v in np.unique(mask[mask > 0])}
        else:
            names = {v: self.ctx.source.label_map.name_of(v) for v in row["label_values"]}
        return LoadedSample(dim=2, image=image, layers=[LabelLayer(mask, names)])

    def load_pixels(self, row: dict) -> LoadedSample:
        """The image only: render draws marks from the described RLE, never from the mask files."""
        return LoadedSample(dim=2, image=read_image(self.ctx.resolve(row["image_refs"][0]),
                                                    self.ctx.config.ingest.max_pixels))
