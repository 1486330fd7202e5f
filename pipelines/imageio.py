"""2D image decoding and encoding (Pillow to read, OpenCV to write PNG), with size guards."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from pipelines.errors import Reason, SampleError

Image.MAX_IMAGE_PIXELS = None  # we enforce our own, configurable limit before decoding


def image_size(path: Path, max_pixels: int, rel: str = "") -> tuple[int, int]:
    """(width, height) from the header only; refuses absurd sizes before any decoding."""
    try:
        with Image.open(path) as im:
            w, h = im.size
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise SampleError(Reason.CORRUPT_FILE, f"'{rel or path.name}' is not a readable image: {exc}",
                          rel) from exc
    if w * h > max_pixels:
        raise SampleError(Reason.TOO_MANY_PIXELS,
                          f"'{rel or path.name}' declares {w}x{h} = {w * h} pixels, over the limit "
                          f"{max_pixels} (ingest.max_pixels); raise the limit if the image is genuine", rel)
    return w, h


def read_image(path: Path, max_pixels: int, rel: str = "") -> np.ndarray:
    """Decode an image to (H, W) or (H, W, 3) keeping bit depth (8/16-bit, float)."""
    image_size(path, max_pixels, rel)
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode in ("P", "PA", "RGBA", "LA", "CMYK", "YCbCr", "1"):
                im = im.convert("RGB" if mode not in ("1", "LA") else "L")
            elif mode == "I;16B":
                im = im.convert("I;16")
            arr = np.asarray(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise SampleError(Reason.CORRUPT_FILE,
                          f"'{rel or path.name}' could not be decoded ({exc}); re-export the file", rel) from exc
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise SampleError(Reason.NON_FINITE, f"'{rel or path.name}' has {int((~np.isfinite(arr)).sum())} NaN/Inf "
                          "pixels (they would be published as black); re-export it without them", rel)
    return np.ascontiguousarray(arr)


def read_mask(path: Path, max_pixels: int, rel: str = "") -> np.ndarray:
    """A label image as one channel; colour-saved masks take the channel maximum."""
    arr = read_image(path, max_pixels, rel)
    if arr.ndim == 3:
        arr = arr.max(axis=2)
    return arr


def encode_png(rgb: np.ndarray, level: int = 3) -> bytes:
    """Lossless, deterministic PNG bytes of an RGB (H, W, 3) uint8 array at zlib ``level``."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, level])
    if not ok:  # pragma: no cover - OpenCV only fails on invalid arrays
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def decode_png(data: bytes) -> np.ndarray:
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
