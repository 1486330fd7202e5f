"""Change detection for source datasets: a size+mtime fast path confirmed by content hashes.

A dataset's fingerprint hashes its registry entry, its label map and the sha256 of every file
under its root. File hashes are cached by (path, size, mtime), so an unchanged file is never
re-read; a `touch` re-hashes that one file and yields the same fingerprint, so it triggers
nothing. The run version adds the settings hash and the code version: a dataset whose run
version equals the one recorded with its last materialization is up to date.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.registry import Registry, Source
from pipelines.storage import atomic_write_bytes

CHUNK = 1 << 20
PROJECT_ROOT = Path(__file__).resolve().parents[1]
CODE_DIRS = ("pipelines", "assets")


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class HashCache:
    """sha256 per file keyed by its size and mtime; persisted as JSON under the data root."""

    path: Path | None = None
    entries: dict[str, list] = field(default_factory=dict)
    hashed: int = 0  # files actually read in this process (for tests and metadata)
    dirty: bool = False

    @classmethod
    def load(cls, path: Path | None) -> "HashCache":
        if path is None or not path.is_file():
            return cls(path)
        try:
            return cls(path, json.loads(path.read_text()))
        except (OSError, ValueError):  # a damaged cache only costs a re-hash
            return cls(path)

    def sha256(self, path: str, st: os.stat_result) -> str:
        hit = self.entries.get(path)
        if hit and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
            return hit[2]
        digest = file_sha256(path)
        self.entries[path] = [st.st_size, st.st_mtime_ns, digest]
        self.hashed += 1
        self.dirty = True
        return digest

    def save(self) -> None:
        if self.path is not None and self.dirty:
            atomic_write_bytes(self.path, json.dumps(self.entries, sort_keys=True).encode())
            self.dirty = False


def _files(root: Path):
    """Every file under the root, following symlinked folders (a root built of links to the real image and
    mask folders), each real folder once; dangling links are listed as such, not stat-ed."""
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames.sort()
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            yield os.path.relpath(full, root), full


def content_fingerprint(source: Source, cache: HashCache | None = None) -> str:
    """Entry, label map and every file's content hash (cached by size+mtime)."""
    cache = cache if cache is not None else HashCache()
    h = hashlib.sha256(source.entry.model_dump_json().encode())
    h.update(source.label_map_path.read_bytes())
    if source.pixel_table is not None and source.pixel_table.is_file():  # may lie outside the root
        h.update(source.pixel_table.read_bytes())
    for rel, full in _files(source.root):
        if not os.path.exists(full):  # a dangling symlink: its name is all there is
            h.update(f"{rel}:dangling\n".encode())
            continue
        h.update(f"{rel}:{cache.sha256(full, os.stat(full))}\n".encode())
    return h.hexdigest()[:16]


def code_version(root: Path = PROJECT_ROOT) -> str:
    """Hash of the project's Python sources: a code change makes every output stale."""
    h = hashlib.sha256()
    for d in CODE_DIRS:
        for path in sorted((root / d).rglob("*.py")):
            h.update(f"{path.relative_to(root)}\n".encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:12]


def run_version(source_fp: str, config_fp: str, code: str) -> str:
    """What a dataset's outputs depend on: its content, the settings and the code."""
    return hashlib.sha256(f"{source_fp}|{config_fp}|{code}".encode()).hexdigest()[:16]


def registry_fingerprints(registry: Registry, cache: HashCache | None = None,
                          only: list[str] | None = None) -> dict[str, str]:
    cache = cache if cache is not None else HashCache()
    out = {ds: content_fingerprint(registry.get(ds), cache) for ds in (only or registry.ids)}
    cache.save()
    return out


def hash_cache_path(data_root: Path) -> Path:
    return Path(data_root) / ".state" / "source_hashes.json"
