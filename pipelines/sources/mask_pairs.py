"""2D segmentation: image + mask files matched by a name rule; binary or indexed masks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from pipelines.imageio import read_image, read_mask
from pipelines.sources.classification import unsupported_image
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


class MaskPairsReader(Reader):
    format = "mask_pairs"

    class Options(Reader.Options):
        images: str = "images"
        masks: str = "masks"
        mask_name: str = "{stem}.png"  # also {name} (file name with extension), {stem}
        mode: str = "indexed"  # indexed: pixel value = label value; binary: threshold to {0, 1}
        threshold: int = 127
        invert: bool = False  # binary masks whose foreground is the dark value

    def _mask_values(self, raw: np.ndarray) -> np.ndarray:
        if self.opts.mode == "binary":
            fg = raw > self.opts.threshold
            return (~fg if self.opts.invert else fg).astype(np.uint8)
        return raw

    def _record(self, img: Path) -> SampleRecord:
        ctx, o = self.ctx, self.opts
        rel = ctx.rel(img)
        mask_ref = str(Path(o.masks) / o.mask_name.format(stem=img.stem, name=img.name))
        limit = ctx.config.ingest.max_pixels
        image = read_image(img, limit, rel, ctx.limits, exif="refuse")
        mpath = ctx.resolve(mask_ref)
        mask = self._mask_values(read_mask(mpath, limit, mask_ref, ctx.limits))
        if mask.shape[:2] != image.shape[:2]:
            raise SampleError(Reason.GRID_MISMATCH,
                              f"mask '{mask_ref}' is {mask.shape[1]}x{mask.shape[0]} but image '{rel}' is "
                              f"{image.shape[1]}x{image.shape[0]}; masks must have the image's size", rel)
        values = named_values(mask, ctx, mask_ref, "mask")
        lm = ctx.source.label_map
        lo, hi = intensity_range(image)
        return SampleRecord(key=rel, name=img.stem, source_path=rel, group_key=ctx.group_key(rel),
                            image_refs=[rel], label_ref=ctx.rel(mpath),
                            labels=sorted({lm.name_of(v) for v in values}), label_values=values,
                            shape=list(image.shape), spacing=[1.0, 1.0], intensity_min=lo, intensity_max=hi)

    def scan(self) -> Iterator[SampleRecord | Quarantined]:
        img_dir = self.ctx.resolve(self.opts.images)
        exts = self.ctx.config.ingest.image_extensions
        for img in sorted(img_dir.iterdir()):
            if (other := unsupported_image(self, img)) is not None:
                yield other
                continue
            if img.suffix.lower() not in exts:
                continue
            rel = self.ctx.rel(img)
            yield self.guarded(rel, lambda: self._record(img), rel)

    def load(self, row: dict) -> LoadedSample:
        limit = self.ctx.config.ingest.max_pixels
        image = read_image(self.ctx.resolve(row["image_refs"][0]), limit, row["image_refs"][0], self.ctx.limits,
                           exif="refuse")
        mask = self._mask_values(read_mask(self.ctx.resolve(row["label_ref"]), limit, row["label_ref"],
                                           self.ctx.limits))
        names = {v: self.ctx.source.label_map.name_of(v) for v in row["label_values"]}
        return LoadedSample(dim=2, image=image, layers=[LabelLayer(mask, names)])
