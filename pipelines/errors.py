"""Quarantine reason codes and the per-sample error readers raise (kept dependency-free)."""

from __future__ import annotations

from enum import Enum


class Reason(str, Enum):
    """Quarantine reason codes (stable strings: tests and users filter on them)."""

    CORRUPT_FILE = "corrupt_file"
    MISSING_FILE = "missing_file"
    PATH_TRAVERSAL = "path_traversal"
    TOO_MANY_PIXELS = "too_many_pixels"
    NON_FINITE = "non_finite_values"
    GRID_MISMATCH = "grid_mismatch"
    EMPTY_MASK = "empty_mask"
    BOX_OUTSIDE_IMAGE = "box_outside_image"
    UNKNOWN_LABEL = "unknown_label"
    DUPLICATE_SAMPLE = "duplicate_sample"
    REFERENCED_IMAGES_MISSING = "referenced_images_missing"
    EMPTY_ROI = "empty_roi"
    BAD_ANNOTATION = "bad_annotation"
    NO_SAMPLES = "no_samples"
    BAD_GEOMETRY = "bad_geometry"
    UNSUPPORTED_PIXEL_TYPE = "unsupported_pixel_type"
    EXCLUDED_FILE = "excluded_file"  # left out on purpose (an `exclude` pattern, a mask beside its image): counted, not lost
    # the file itself, before any decoder sees it (pipelines.sourcefiles)
    UNREADABLE = "unreadable"
    NOT_A_REGULAR_FILE = "not_a_regular_file"
    SYMLINK_LOOP = "symlink_loop"
    DANGLING_LINK = "dangling_link"
    FILE_TOO_LARGE = "file_too_large"
    READ_TIMEOUT = "read_timeout"
    UNSUPPORTED_FORMAT = "unsupported_format"
    # geometry the file states but medbench does not guess around
    OBLIQUE_ORIENTATION = "oblique_orientation"
    EXIF_ORIENTATION = "exif_orientation"


class SampleError(Exception):
    """Raised inside a reader for one bad sample; turned into a quarantine row by the caller."""

    def __init__(self, reason: Reason, message: str, path: str = ""):
        super().__init__(message)
        self.reason = reason
        self.path = path
