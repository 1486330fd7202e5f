"""Change detection for source datasets: a stat fast path, confirmed by content hashes.

A dataset's fingerprint hashes its registry entry, its label map and the sha256 of every file
under its root. File hashes are cached by (size, mtime, inode, ctime): an unchanged file is never
re-read. When size and mtime are equal but the inode or ctime changed (an in-place edit restored
with `touch -d`, `cp -p`, `rsync -t`), the file is re-hashed and its content decides; a `touch`
re-hashes one file and yields the same fingerprint. `verify` re-hashes every file.

The walk is stat-only and never opens what is not a regular file; a path that cannot be used (a
loop, a dangling link, a FIFO, a device, an unreadable or oversized file) enters the fingerprint as
its reason, is listed in ``problems`` and is quarantined by ingest: it never stops the build. The run
version adds the settings hash and the code version.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.config import PROJECT_ROOT
from pipelines.errors import SampleError
from pipelines.source import Registry, Source
from pipelines.sourcefiles import DEFAULT_LIMITS, FileProblem, Limits, sha256_file, walk
from pipelines.storage import atomic_write_bytes

CODE_DIRS = ("pipelines", "assets")


def file_sha256(path: str, limits: Limits = DEFAULT_LIMITS) -> str:
    return sha256_file(path, os.path.basename(path), limits)


def _stamp(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]


@dataclass
class HashCache:
    """sha256 per file keyed by its size, mtime, inode and ctime; persisted as JSON under the data root."""

    path: Path | None = None
    entries: dict[str, list] = field(default_factory=dict)
    hashed: int = 0  # files actually read in this process (for tests and metadata)
    dirty: bool = False
    verify: bool = False  # re-hash every file, trusting no stat
    limits: Limits = DEFAULT_LIMITS

    @classmethod
    def load(cls, path: Path | None, verify: bool = False, limits: Limits = DEFAULT_LIMITS) -> "HashCache":
        if path is None or not path.is_file():
            return cls(path, verify=verify, limits=limits)
        try:
            entries = json.loads(path.read_text())
            if not isinstance(entries, dict):
                raise ValueError("not an object")
            return cls(path, entries, verify=verify, limits=limits)
        except (OSError, ValueError):  # a damaged cache only costs a re-hash
            return cls(path, verify=verify, limits=limits)

    def sha256(self, path: str, st: os.stat_result, rel: str = "") -> str:
        """The file's hash; raises SampleError (unreadable, too large, timeout) when it cannot be read."""
        hit = self.entries.get(path)
        if not self.verify and isinstance(hit, list) and len(hit) == 5 and hit[:4] == _stamp(st):
            return hit[4]
        digest = sha256_file(path, rel or os.path.basename(path), self.limits)
        self.entries[path] = [*_stamp(st), digest]
        self.hashed += 1
        self.dirty = True
        return digest

    def save(self) -> None:
        if self.path is not None and self.dirty:
            try:
                atomic_write_bytes(self.path, json.dumps(self.entries, sort_keys=True).encode())
            except OSError:  # an unwritable cache only costs re-hashing next time
                return
            self.dirty = False


def _linked_layout(source: Source) -> bool:
    """A root whose option folders (images, masks, ..., the reader's defaults included) are symlinks to the real
    folders: the user's own layout, so the files behind those links are followed (a loop still stops the walk
    with its reason). Any other link out of the root enters as its target's name, unread."""
    from pipelines.sources import READERS
    reader = READERS.get(source.entry.format)
    try:
        options = reader.Options.model_validate(source.entry.options).model_dump() if reader else source.entry.options
    except ValueError:  # options the registry check refuses: the layout is not the user's declared one
        options = source.entry.options
    for value in (options or {}).values():
        if isinstance(value, str) and value and not os.path.isabs(value) and (Path(source.root) / value).is_symlink():
            return True
    return False


def content_fingerprint(source: Source, cache: HashCache | None = None,
                        problems: list[FileProblem] | None = None) -> str:
    """Entry, label map and every file's content hash (cached by stat); unusable paths enter as their reason."""
    cache = cache if cache is not None else HashCache()
    h = hashlib.sha256(source.entry.model_dump_json().encode())
    h.update(source.label_map_path.read_bytes())
    if source.pixel_table is not None and source.pixel_table.is_file():  # may lie outside the root
        h.update(source.pixel_table.read_bytes())
    for e in walk(source.root, cache.limits, follow_outside=_linked_layout(source)):
        if e.link is not None:
            h.update(f"{e.rel}->{e.link}\n".encode())
            continue
        problem = e.problem
        if problem is None:
            try:
                h.update(f"{e.rel}:{cache.sha256(str(e.path), e.st, e.rel)}\n".encode())
                continue
            except SampleError as exc:
                problem = FileProblem(exc.path or e.rel, exc.reason, str(exc))
        h.update(f"{e.rel}:!{problem.reason.value}\n".encode())
        if problems is not None:
            problems.append(problem)
    return h.hexdigest()[:16]


def code_version(root: Path = PROJECT_ROOT) -> str:
    """Hash of the project's Python sources: a code change makes every output stale. A root without them is an
    error, never the hash of nothing (which would call every output up to date whatever the code)."""
    h = hashlib.sha256()
    files = [p for d in CODE_DIRS for p in sorted((root / d).rglob("*.py"))]
    if not files:
        raise FileNotFoundError(f"no Python sources under {', '.join(str(root / d) for d in CODE_DIRS)}")
    for path in files:
        h.update(f"{path.relative_to(root)}\n".encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


def run_version(source_fp: str, config_fp: str, code: str) -> str:
    """What a dataset's outputs depend on: its content, the settings and the code."""
    return hashlib.sha256(f"{source_fp}|{config_fp}|{code}".encode()).hexdigest()[:16]


def registry_fingerprints(registry: Registry, cache: HashCache | None = None,
                          only: list[str] | None = None,
                          problems: dict[str, list[FileProblem]] | None = None) -> dict[str, str]:
    cache = cache if cache is not None else HashCache()
    out = {}
    for ds in only or registry.ids:
        found: list[FileProblem] = []
        out[ds] = content_fingerprint(registry.get(ds), cache, found)
        if problems is not None:
            problems[ds] = found
    cache.save()
    return out


def hash_cache_path(data_root: Path) -> Path:
    return Path(data_root) / ".state" / "source_hashes.json"
