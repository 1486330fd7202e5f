"""Cheap change detection for source datasets: registry entry + label map + file sizes/mtimes."""

from __future__ import annotations

import hashlib
import os

from pipelines.registry import Registry, Source


def source_fingerprint(source: Source) -> str:
    h = hashlib.sha256()
    h.update(source.entry.model_dump_json().encode())
    h.update(source.label_map_path.read_bytes())
    for dirpath, dirnames, filenames in os.walk(source.root):
        dirnames.sort()
        for name in sorted(filenames):
            st = os.stat(os.path.join(dirpath, name))
            h.update(f"{os.path.relpath(os.path.join(dirpath, name), source.root)}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def registry_fingerprints(registry: Registry) -> dict[str, str]:
    return {ds: source_fingerprint(registry.get(ds)) for ds in registry.ids}
