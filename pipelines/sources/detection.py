"""2D detection readers: COCO JSON, Pascal VOC XML and YOLO txt. Boxes end up in pixel edges
(x0, y0 inclusive corner, x1, y1 exclusive corner) of the original image."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

from pipelines.imageio import image_size, read_image
from pipelines.sourcefiles import read_bytes
from pipelines.sources.base import (
    Box,
    LoadedSample,
    Quarantined,
    Reader,
    Reason,
    SampleError,
    SampleRecord,
)
from pipelines.textio import read_text

MIN_BOX_SIDE = 2.0  # px; smaller boxes (e.g. the 1x1 VOC boxes in BCCD) cannot be drawn or seen
EDGE_TOLERANCE = 0.5  # px; normalized (YOLO) coordinates round slightly past the edge: clamp those


def check_boxes(boxes: list[Box], width: int, height: int, rel: str) -> tuple[list[Box], list[Quarantined]]:
    """Keep boxes inside the image and large enough to draw; quarantine the others one by one."""
    good, bad = [], []
    for b in boxes:
        if -EDGE_TOLERANCE <= b.x0 < 0 or -EDGE_TOLERANCE <= b.y0 < 0 or width < b.x1 <= width + EDGE_TOLERANCE \
                or height < b.y1 <= height + EDGE_TOLERANCE:
            b = Box(b.label, max(b.x0, 0.0), max(b.y0, 0.0), min(b.x1, float(width)), min(b.y1, float(height)))
        desc = f"box {b.label} [{b.x0:g},{b.y0:g},{b.x1:g},{b.y1:g}] in '{rel}'"
        if not all(math.isfinite(v) for v in (b.x0, b.y0, b.x1, b.y1)):
            bad.append(Quarantined(rel, Reason.BAD_ANNOTATION, f"{desc} has a NaN/Inf coordinate; fix the annotation"))
        elif b.x0 < 0 or b.y0 < 0 or b.x1 > width or b.y1 > height or b.x1 <= b.x0 or b.y1 <= b.y0:
            bad.append(Quarantined(rel, Reason.BOX_OUTSIDE_IMAGE,
                                   f"{desc} is not inside the {width}x{height} image; fix the annotation"))
        elif b.x1 - b.x0 < MIN_BOX_SIDE or b.y1 - b.y0 < MIN_BOX_SIDE:
            bad.append(Quarantined(rel, Reason.BAD_ANNOTATION,
                                   f"{desc} is degenerate (side < {MIN_BOX_SIDE:g} px); fix or drop it"))
        else:
            good.append(b)
    return good, bad


class _DetectionReader(Reader):
    """Shared scan: subclasses list (image path, boxes) pairs."""

    def annotations(self) -> Iterator[tuple[str, str, list[Box]]]:  # (image ref, annotation file, boxes)
        raise NotImplementedError

    def _record(self, ref: str, ann: str, boxes: list[Box], out: list[Quarantined]) -> SampleRecord:
        path = self.ctx.resolve(ref)
        rel = self.ctx.rel(path)
        w, h = image_size(path, self.ctx.config.ingest.max_pixels, rel, self.ctx.limits, exif="refuse")
        known = []
        for b in boxes:
            try:
                self.ctx.check_label(b.label, ann)
                known.append(b)
            except SampleError as exc:
                out.append(Quarantined(ann, exc.reason, str(exc)))
        good, bad = check_boxes(known, w, h, rel)
        out.extend(bad)
        if not good:
            raise SampleError(Reason.BAD_ANNOTATION, f"'{rel}' has no usable box left ({ann})", rel)
        return SampleRecord(key=rel, name=path.stem, source_path=rel, group_key=self.ctx.group_key(rel),
                            image_refs=[rel], label_ref=ann, boxes=good,
                            labels=sorted({b.label for b in good}), shape=[h, w])

    def scan(self) -> Iterator[SampleRecord | Quarantined]:
        try:
            items = list(self.annotations())
        except SampleError as exc:
            yield Quarantined(exc.path, exc.reason, str(exc))
            return
        for item in items:
            if isinstance(item, Quarantined):  # one bad annotation, the rest of the file is kept
                yield item
                continue
            ref, ann, boxes = item
            if isinstance(boxes, Quarantined):
                yield boxes
                continue
            side: list[Quarantined] = []
            rec = self.guarded(ref, lambda: self._record(ref, ann, boxes, side), ref)
            yield from side
            yield rec

    def load(self, row: dict) -> LoadedSample:
        path = self.ctx.resolve(row["image_refs"][0])
        return LoadedSample(dim=2, image=read_image(path, self.ctx.config.ingest.max_pixels, row["image_refs"][0],
                                                    self.ctx.limits, exif="refuse"),
                            boxes=[Box(**b) for b in row["boxes"]])


class CocoReader(_DetectionReader):
    format = "coco"

    class Options(Reader.Options):
        file: str
        image_root: str = "."

    def annotations(self):
        o = self.opts
        path = self.ctx.resolve(o.file)
        try:
            doc = json.loads(read_text(path, o.file, limits=self.ctx.limits))
            categories, images, annotations = doc["categories"], doc["images"], doc["annotations"]
            if not all(isinstance(x, list) for x in (categories, images, annotations)):
                raise TypeError("'categories', 'images' and 'annotations' must be lists")
        except (ValueError, KeyError, TypeError) as exc:
            raise SampleError(Reason.BAD_ANNOTATION, f"COCO file {o.file} is malformed: {exc!r}", o.file) from exc
        cats = {c.get("id"): c.get("name") for c in categories if isinstance(c, dict)}
        by_id: dict[object, list[dict]] = defaultdict(list)
        for im in images:
            if isinstance(im, dict) and isinstance(im.get("file_name"), str):
                by_id[im.get("id")].append(im)
            else:
                yield Quarantined(o.file, Reason.BAD_ANNOTATION, f"COCO image entry {im!r} in {o.file} has no file_name")
        dup = {i for i, ims in by_id.items() if len(ims) > 1}
        per_image: dict[object, list[Box]] = defaultdict(list)
        for n, a in enumerate(annotations):
            where = f"{o.file}#annotations[{n}]"
            try:
                image_id, cat = a["image_id"], a["category_id"]
                x, y, w, h = (float(v) for v in a["bbox"])
            except (KeyError, TypeError, ValueError) as exc:
                yield Quarantined(where, Reason.BAD_ANNOTATION, f"annotation {n} of {o.file} is malformed "
                                  f"({type(exc).__name__}: {exc}); it needs image_id, category_id and a 4-number bbox")
                continue
            if image_id not in by_id:
                yield Quarantined(where, Reason.BAD_ANNOTATION, f"annotation {n} of {o.file} refers to image_id "
                                  f"{image_id!r}, which no entry of 'images' has")
                continue
            if cat not in cats or not isinstance(cats[cat], str):
                yield Quarantined(where, Reason.BAD_ANNOTATION, f"annotation {n} of {o.file} has category_id "
                                  f"{cat!r}, which 'categories' does not name")
                continue
            per_image[image_id].append(Box(cats[cat], x, y, x + w, y + h))
        for image_id in sorted(dup, key=str):
            names = sorted(im["file_name"] for im in by_id[image_id])
            for name in names:  # whose boxes are whose cannot be told: none of them is used
                yield Quarantined(str(Path(o.image_root) / name), Reason.BAD_ANNOTATION,
                                  f"image id {image_id!r} is used by {len(names)} images in {o.file} ({', '.join(names)}); "
                                  "give each image its own id")
        for im in sorted((ims[0] for i, ims in by_id.items() if i not in dup), key=lambda im: im["file_name"]):
            yield str(Path(o.image_root) / im["file_name"]), o.file, per_image.get(im["id"], [])


class VocReader(_DetectionReader):
    """Pascal VOC: 1-based inclusive pixel corners, converted to 0-based edges."""

    format = "voc"

    class Options(Reader.Options):
        annotations: str = "Annotations"
        images: str = "JPEGImages"

    def annotations(self):
        ann_dir = self.ctx.resolve(self.opts.annotations)
        for xml_path in sorted(ann_dir.glob("*.xml")):
            ann = self.ctx.rel(xml_path)
            try:
                root = ET.fromstring(read_bytes(xml_path, ann, self.ctx.limits))  # bytes: the XML declaration decides
                fname = root.findtext("filename") or f"{xml_path.stem}.jpg"
                boxes = []
                for obj in root.iter("object"):
                    bb = obj.find("bndbox")
                    boxes.append(Box(obj.findtext("name", "").strip(),
                                     float(bb.findtext("xmin")) - 1, float(bb.findtext("ymin")) - 1,
                                     float(bb.findtext("xmax")), float(bb.findtext("ymax"))))
            except SampleError as exc:  # not a regular file, unreadable, not text
                yield ann, ann, Quarantined(exc.path or ann, exc.reason, str(exc))
                continue
            except (ET.ParseError, TypeError, ValueError, AttributeError) as exc:
                yield ann, ann, Quarantined(ann, Reason.BAD_ANNOTATION, f"VOC file '{ann}' is malformed: {exc}")
                continue
            yield str(Path(self.opts.images) / fname), ann, boxes


class YoloReader(_DetectionReader):
    """YOLO: one txt per image with 'class cx cy w h' normalized to the image size."""

    format = "yolo"

    class Options(Reader.Options):
        images: str = "images"
        labels: str = "labels"
        classes_file: str = "classes.txt"

    def annotations(self):
        classes_ref = self.opts.classes_file
        classes = [c.strip() for c in read_text(self.ctx.resolve(classes_ref), classes_ref,
                                                limits=self.ctx.limits).splitlines()]
        classes = [c for c in classes if c]
        img_dir = self.ctx.resolve(self.opts.images)
        for img in sorted(p for p in img_dir.iterdir() if p.suffix.lower() in self.ctx.config.ingest.image_extensions):
            txt = str(Path(self.opts.labels) / f"{img.stem}.txt")
            ref = self.ctx.rel(img)
            try:
                w, h = image_size(img, self.ctx.config.ingest.max_pixels, ref, self.ctx.limits, exif="refuse")
                lines = read_text(self.ctx.resolve(txt), txt, limits=self.ctx.limits).splitlines()
            except SampleError as exc:
                yield ref, txt, Quarantined(exc.path, exc.reason, str(exc))
                continue
            boxes = []
            for n, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    c, cx, cy, bw, bh = line.split()
                    cls, (cx, cy, bw, bh) = int(c), (float(cx) * w, float(cy) * h, float(bw) * w, float(bh) * h)
                except ValueError as exc:
                    yield Quarantined(f"{txt}:{n}", Reason.BAD_ANNOTATION,
                                      f"line {n} of YOLO file '{txt}' is malformed ({exc}); expected 'class cx cy w h'")
                    continue
                if not 0 <= cls < len(classes):
                    yield Quarantined(f"{txt}:{n}", Reason.BAD_ANNOTATION,
                                      f"line {n} of '{txt}' has class {cls}; {classes_ref} lists {len(classes)} "
                                      f"classes (0..{len(classes) - 1})")
                    continue
                boxes.append(Box(classes[cls], cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2))
            yield ref, txt, boxes
