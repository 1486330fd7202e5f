"""3D image + label volumes that SimpleITK reads (NIfTI, NRRD, MHA), in three layouts:
plain pairs by name rule, Medical Segmentation Decathlon (dataset.json) and nnU-Net raw."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from pipelines.processes import ordered_map
from pipelines.sources.base import (
    LabelLayer,
    LoadedSample,
    Quarantined,
    Reader,
    Reason,
    SampleError,
    SampleRecord,
    checked_values,
)
from pipelines.textio import read_text
from pipelines.volume import (
    Grid,
    array_facts,
    check_grid,
    check_oblique,
    read_volume,
    scan_volume,
)

VOLUME_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


def case_name(path: Path) -> str:
    name = path.name
    for suf in VOLUME_SUFFIXES:
        if name.endswith(suf):
            return name[: -len(suf)]
    return path.stem


def scan_volume_pair(reader: Reader, image_ref: str, label_ref: str, name: str,
                     image: sitk.Image | None = None, extra_refs: list[str] | None = None,
                     meta: dict | None = None) -> SampleRecord:
    """Validate one image/label pair and summarize it for raw_samples: each volume's voxels are decoded once,
    a slab at a time where the format allows (see :func:`scan_volume`), and the grids are compared from their
    geometry, so memory stays bounded by one volume whatever the orientation."""
    ctx = reader.ctx
    limit = ctx.config.ingest.max_pixels
    if image is None:
        img = scan_volume(ctx.resolve(image_ref), image_ref, limit, limits=ctx.limits)
    else:
        img = array_facts(sitk.GetArrayViewFromImage(image), Grid.of(image), image_ref, labels=False)
    lab = scan_volume(ctx.resolve(label_ref), label_ref, limit, labels=True, limits=ctx.limits)
    check_grid(img.grid, lab.grid, image_ref, ctx.config.standardize.grid_tolerance,
               ctx.config.standardize.canonical_orientation)
    if lab.non_integer:
        raise SampleError(Reason.CORRUPT_FILE, f"label '{label_ref}' has non-integer values", label_ref)
    values = checked_values(lab.values, ctx, label_ref, "label volume")
    cfg = ctx.config.standardize
    meta = {**(meta or {}), **check_oblique(img.grid, image_ref, cfg.oblique, cfg.oblique_tolerance_deg)}
    lm = ctx.source.label_map
    return SampleRecord(
        key=image_ref, name=name, source_path=image_ref, group_key=ctx.group_key(image_ref),
        image_refs=[image_ref] + (extra_refs or []), label_ref=label_ref,
        labels=sorted({lm.name_of(v) for v in values}), label_values=values,
        shape=list(img.grid.size), spacing=list(img.grid.spacing),
        orientation=img.orientation, intensity_min=img.low, intensity_max=img.high,
        meta=meta)


def load_volume_pair(reader: Reader, row: dict, labels: bool = True) -> LoadedSample:
    ctx = reader.ctx
    limit = ctx.config.ingest.max_pixels
    image = read_volume(ctx.resolve(row["image_refs"][0]), row["image_refs"][0], limit, verify=False,
                        limits=ctx.limits)
    if not labels:
        return LoadedSample(dim=3, image=image, layers=[])
    label = read_volume(ctx.resolve(row["label_ref"]), row["label_ref"], limit, verify=False, limits=ctx.limits)
    names = {int(v): ctx.source.label_map.name_of(v) for v in row["label_values"]}
    return LoadedSample(dim=3, image=image, layers=[LabelLayer(label, names)])


class VolumePairsReader(Reader):
    """images/<case>.<ext> + labels/<case>.<ext> (names by rule; '_0000' channel suffix stripped)."""

    format = "volume_pairs"

    class Options(Reader.Options):
        images: str = "images"
        labels: str = "labels"
        image_glob: str = "*"
        case_suffix: str = ""  # stripped from image names to get the case (e.g. "_image")
        label_name: str = "{case}{ext}"

    def pairs(self) -> Iterator[tuple[str, str, str]]:
        img_dir = self.ctx.resolve(self.opts.images)
        glob = getattr(self.opts, "image_glob", "*")
        suffix = getattr(self.opts, "case_suffix", "")
        for img in sorted(p for p in img_dir.glob(glob) if p.name.endswith(VOLUME_SUFFIXES)):
            case = case_name(img)
            ext = img.name[len(case):]
            base = case[:-5] if case.endswith("_0000") else case
            base = base[: -len(suffix)] if suffix and base.endswith(suffix) else base
            label = str(Path(self.opts.labels) / self.opts.label_name.format(case=base, ext=ext))
            yield self.ctx.rel(img), label, base

    def scan(self) -> Iterator[SampleRecord | Quarantined]:
        try:
            pairs = list(self.pairs())
        except SampleError as exc:
            yield Quarantined(exc.path, exc.reason, str(exc))
            return
        checked = ordered_map(_scan_guarded, [(self, *item) for item in pairs if not isinstance(item, Quarantined)],
                              self.ctx.config.ingest.workers)
        for item in pairs:  # in listing order, so duplicate handling downstream is unchanged
            yield item if isinstance(item, Quarantined) else next(checked)

    def load(self, row: dict) -> LoadedSample:
        return load_volume_pair(self, row)

    def load_pixels(self, row: dict) -> LoadedSample:
        return load_volume_pair(self, row, labels=False)


def _scan_guarded(job: tuple) -> SampleRecord | Quarantined:
    """One pair's check (in a worker process when ingest.workers > 1): both volumes decoded, then dropped."""
    reader, image_ref, label_ref, name = job
    return reader.guarded(image_ref, lambda: scan_volume_pair(reader, image_ref, label_ref, name), image_ref)


def load_dataset_json(reader: Reader) -> dict:
    """dataset.json as a dict, or a SampleError (bad_annotation) that says what is wrong with it."""
    rel = reader.opts.dataset_json
    try:
        doc = json.loads(read_text(reader.ctx.resolve(rel), rel, limits=reader.ctx.limits))
    except ValueError as exc:
        raise SampleError(Reason.BAD_ANNOTATION, f"{rel} is not valid JSON ({exc}); fix the file", rel) from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("labels", {}), dict):
        raise SampleError(Reason.BAD_ANNOTATION, f"{rel} must be an object with a 'labels' mapping", rel)
    return doc


def json_labels(reader: Reader, by_name: bool = False) -> dict[int, str]:
    """Label value -> name from dataset.json (MSD: {"1": "liver"}; nnU-Net v2: {"liver": 1})."""
    rel = reader.opts.dataset_json
    raw = load_dataset_json(reader).get("labels", {})
    try:
        return {int(v): str(n) for n, v in raw.items()} if by_name else {int(v): str(n) for v, n in raw.items()}
    except (TypeError, ValueError) as exc:
        raise SampleError(Reason.BAD_ANNOTATION, f"{rel} 'labels' has a non-integer value ({exc}); MSD uses "
                          '{"1": "name"}, nnU-Net v2 {"name": 1}', rel) from exc


def dataset_json(reader: Reader, labels: dict[int, str]) -> dict:
    """Check that dataset.json's label names agree with the label map; return the document."""
    lm = reader.ctx.source.label_map
    for value, name in labels.items():
        if value != 0 and lm.name_of(value) != name:
            raise SampleError(Reason.UNKNOWN_LABEL,
                              f"dataset.json names label {value} '{name}' but the label map says "
                              f"'{lm.name_of(value)}'; make them agree", reader.opts.dataset_json)
    return load_dataset_json(reader)


class MsdReader(VolumePairsReader):
    """Medical Segmentation Decathlon: dataset.json lists training pairs and label names."""

    format = "msd"

    class Options(Reader.Options):
        dataset_json: str = "dataset.json"

    def pairs(self):
        rel = self.opts.dataset_json
        doc = dataset_json(self, json_labels(self))
        training = doc.get("training")
        if not isinstance(training, list):
            raise SampleError(Reason.BAD_ANNOTATION, f"{rel} has no 'training' list of image/label pairs", rel)
        for i, item in enumerate(training):
            if not (isinstance(item, dict) and isinstance(item.get("image"), str) and isinstance(item.get("label"), str)):
                yield Quarantined(f"{rel}#training[{i}]", Reason.BAD_ANNOTATION,
                                  f"{rel} training[{i}] is {item!r}; each entry needs 'image' and 'label' paths")
                continue
            img, lab = item["image"].removeprefix("./"), item["label"].removeprefix("./")
            yield img, lab, case_name(Path(img))


class NnUnetReader(VolumePairsReader):
    """nnU-Net raw: imagesTr/<case>_0000.<ext> + labelsTr/<case>.<ext> (dataset.json v2 labels)."""

    format = "nnunet"

    class Options(Reader.Options):
        images: str = "imagesTr"
        labels: str = "labelsTr"
        label_name: str = "{case}{ext}"
        dataset_json: str = "dataset.json"

    def pairs(self):
        dataset_json(self, json_labels(self, by_name=True))
        for img, label, base in super().pairs():
            if case_name(Path(img)).endswith("_0000"):
                yield img, label, base
