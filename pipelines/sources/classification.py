"""2D classification readers: class-per-folder trees, CSV/TSV manifests, MedMNIST-style .npz."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.imageio import read_image
from pipelines.sources.base import (
    LoadedSample,
    Quarantined,
    Reader,
    Reason,
    SampleError,
    SampleRecord,
    intensity_range,
)


def _image_record(reader: Reader, path: Path, labels: list[str], key: str, group_key: str,
                  meta: dict | None = None) -> SampleRecord:
    ctx = reader.ctx
    rel = ctx.rel(path)
    for label in labels:
        ctx.check_label(label, rel)
    arr = read_image(path, ctx.config.ingest.max_pixels, rel)
    lo, hi = intensity_range(arr)
    return SampleRecord(key=key, name=path.stem, source_path=rel, group_key=group_key,
                        image_refs=[rel], labels=labels, shape=list(arr.shape),
                        spacing=[1.0, 1.0], intensity_min=lo, intensity_max=hi, meta=meta or {})


class _ImageFileReader(Reader):
    """Readers whose sample is one image file with image-level labels."""

    def load(self, row: dict) -> LoadedSample:
        path = self.ctx.resolve(row["image_refs"][0])
        return LoadedSample(dim=2, image=read_image(path, self.ctx.config.ingest.max_pixels),
                            labels=list(row["labels"]))


class ImageFolderReader(_ImageFileReader):
    """root/<class name>/<image>: the folder name is the label."""

    format = "image_folder"

    def scan(self) -> Iterator[SampleRecord | Quarantined]:
        exts = self.ctx.config.ingest.image_extensions
        for cls_dir in sorted(p for p in self.ctx.root.iterdir() if p.is_dir()):
            for path in sorted(cls_dir.rglob("*")):
                if path.suffix.lower() not in exts or not path.is_file():
                    continue
                rel = self.ctx.rel(path)
                yield self.guarded(rel, lambda: _image_record(
                    self, path, [cls_dir.name], rel, self.ctx.group_key(rel)), rel)


class CsvManifestReader(_ImageFileReader):
    """A CSV/TSV listing image paths with one label column, a delimited list, or 0/1 columns."""

    format = "csv_manifest"

    class Options(Reader.Options):
        file: str
        path_column: str = "path"
        image_root: str = "."
        label_column: str | None = None
        label_separator: str | None = None
        label_columns: list[str] | None = None  # multi-label as 0/1 columns

    def _labels(self, row: pd.Series) -> list[str]:
        o = self.opts
        if o.label_columns:
            return [c for c in o.label_columns if str(row[c]).strip() in ("1", "1.0", "True", "true")]
        value = "" if pd.isna(row[o.label_column]) else str(row[o.label_column]).strip()
        if o.label_separator:
            return [v.strip() for v in value.split(o.label_separator) if v.strip()]
        return [value] if value else []

    def scan(self) -> Iterator[SampleRecord | Quarantined]:
        o = self.opts
        manifest = self.ctx.resolve(o.file)
        sep = "\t" if manifest.suffix.lower() in (".tsv", ".tab") else ","
        df = pd.read_csv(manifest, sep=sep, dtype=str, keep_default_na=False, na_values=[])
        needed = [o.path_column] + ([o.label_column] if o.label_column else []) + (o.label_columns or [])
        missing = [c for c in needed if c not in df.columns]
        if missing:
            yield Quarantined(o.file, Reason.BAD_ANNOTATION,
                              f"manifest {o.file} lacks column(s) {missing}; it has {list(df.columns)}")
            return
        group_col = self.ctx.source.entry.group_rule.column
        for i, row in df.iterrows():
            ref = str(Path(o.image_root) / row[o.path_column])

            def one(row=row, ref=ref, i=i) -> SampleRecord:
                path = self.ctx.resolve(ref)
                labels = self._labels(row)
                if not labels and self.ctx.source.entry.task_type == "cls":
                    raise SampleError(Reason.BAD_ANNOTATION, f"row {i + 2} of {o.file} has no label", ref)
                rel = self.ctx.rel(path)
                gval = row[group_col] if group_col and group_col in row else None
                return _image_record(self, path, labels, rel, self.ctx.group_key(rel, gval),
                                     {"manifest_row": int(i) + 2})
            yield self.guarded(ref, one, ref)


class NpzReader(Reader):
    """MedMNIST-style arrays: <split>_images (N, H, W[, C]) and <split>_labels (N, 1 or K)."""

    format = "npz"

    class Options(Reader.Options):
        file: str
        splits: list[str] = ["train", "val", "test"]
        max_per_split: int | None = None

    def scan(self) -> Iterator[SampleRecord | Quarantined]:
        o = self.opts
        path = self.ctx.resolve(o.file)
        lm = self.ctx.source.label_map
        multi = self.ctx.source.entry.task_type == "mcls"
        with np.load(path, allow_pickle=False) as npz:
            for split in o.splits:
                if f"{split}_images" not in npz:
                    continue
                images, labels = npz[f"{split}_images"], npz[f"{split}_labels"]
                n = len(images) if o.max_per_split is None else min(o.max_per_split, len(images))
                for i in range(n):
                    key = f"{o.file}#{split}/{i}"
                    lab = np.atleast_1d(labels[i])
                    values = [int(k) for k in np.nonzero(lab)[0]] if multi else [int(lab[0])]
                    names = [lm.name_of(v) for v in values]
                    if any(n_ is None for n_ in names):
                        yield Quarantined(o.file, Reason.UNKNOWN_LABEL,
                                          f"{key}: label value(s) {values} not in the label map 'values'", key)
                        continue
                    img = images[i]
                    lo, hi = intensity_range(img)
                    yield SampleRecord(key=key, name=f"{split}_{i:05d}", source_path=o.file,
                                       group_key=key, image_refs=[o.file], labels=names,
                                       label_values=values, shape=list(img.shape), spacing=[1.0, 1.0],
                                       intensity_min=lo, intensity_max=hi,
                                       meta={"split": split, "index": i})

    def load(self, row: dict) -> LoadedSample:
        import json
        meta = json.loads(row["reader_meta"])
        with np.load(self.ctx.resolve(self.opts.file), allow_pickle=False) as npz:
            img = np.ascontiguousarray(npz[f"{meta['split']}_images"][meta["index"]])
        return LoadedSample(dim=2, image=img, labels=list(row["labels"]))
