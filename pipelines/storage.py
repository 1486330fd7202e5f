"""Where tables and images live under the data root, and how they are written atomically."""

from __future__ import annotations

import hashlib
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def _temp_beside(path: Path) -> tuple[int, str]:
    """A new, empty temp file beside ``path``, open for writing, with the mode a plain open() gives (0666 minus
    the process umask, applied by the kernel: mkstemp's 0600 needed the umask read back from /proc and a chmod
    per file, a tenth of a millisecond each over thousands of rendered PNGs)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    for _ in range(100):  # a name already taken is tried again, as mkstemp does
        tmp = os.path.join(path.parent, f".{path.name}.{os.urandom(6).hex()}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file beside ``path`` and rename: readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _temp_beside(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_path(path: Path):
    """Yield a temp path beside ``path`` for a writer that streams into it; renamed to ``path`` on success,
    removed on error, so readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _temp_beside(path)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class HashingWriter:
    """A binary file's writer that takes the sha256 and size of what goes through it: the manifest's facts of a
    file written in one pass, without reading it back (hundreds of MB for a TSV)."""

    def __init__(self, fh):
        self.fh, self.hash, self.size = fh, hashlib.sha256(), 0

    def write(self, data: bytes) -> None:
        self.fh.write(data)
        self.hash.update(data)
        self.size += len(data)

    def facts(self) -> dict:
        return {"sha256": self.hash.hexdigest(), "bytes": self.size}


def file_sha256(path: Path) -> str:
    """sha256 of a file read in blocks (an export file can be hundreds of MB)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def file_facts(root: Path, paths: list[Path]) -> dict[str, dict]:
    """sha256 and size of each file, by its path under ``root`` (the manifest's entries)."""
    return {p.relative_to(root).as_posix(): {"sha256": file_sha256(p), "bytes": p.stat().st_size} for p in paths}


def atomic_write_table(table: pa.Table, path: Path) -> Path:
    """Write a Parquet file atomically with deterministic settings (no timestamps in it)."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", write_statistics=True)
    return path


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@contextmanager
def staged_dir(final: Path):
    """Yield a staging folder; on success it replaces ``final`` whole, on error it is removed."""
    final = Path(final)
    staging = final.parent / f".{final.name}.staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True, mode=0o777)  # the umask applies, as for any folder the user makes
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    old = final.parent / f".{final.name}.old-{os.getpid()}"
    if final.exists():
        final.rename(old)
    staging.rename(final)
    shutil.rmtree(old, ignore_errors=True)


class DataLayout:
    """The folder layout under the data root (one place that knows every path)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def table(self, name: str, dataset_id: str | None = None) -> Path:
        """Per-dataset tables live in tables/<name>/<dataset>.parquet, global ones in tables/<name>.parquet."""
        if dataset_id is None:
            return self.root / "tables" / f"{name}.parquet"
        return self.root / "tables" / name / f"{dataset_id}.parquet"

    def quarantine(self, stage: str, dataset_id: str) -> Path:
        return self.root / "tables" / "quarantine" / stage / f"{dataset_id}.parquet"

    def images(self, dataset_id: str) -> Path:
        return self.root / "images" / dataset_id

    def rendered(self) -> Path:
        """The selected items' images (swapped in whole by the render step)."""
        return self.root / "rendered"

    def review_sheet(self, dataset_id: str) -> Path:
        return self.root / "review" / f"{dataset_id}.png"

    def read(self, name: str, dataset_id: str | None = None, columns: list[str] | None = None) -> pa.Table:
        path = self.table(name, dataset_id)
        if not path.exists():
            raise FileNotFoundError(
                f"{path} does not exist: materialize the '{name}' asset"
                + (f" for dataset '{dataset_id}'" if dataset_id else "") + " first"
            )
        return pq.read_table(path, columns=columns)


def stored_masks(path: Path, region_ids: list[str]) -> dict[str, str]:
    """The stored RLE of the given regions only (a filtered read: masks are the bulk of a regions table)."""
    if not region_ids:
        return {}
    t = pq.read_table(path, columns=["region_id", "mask_rle"], filters=[("region_id", "in", list(region_ids))])
    return dict(zip(t.column("region_id").to_pylist(), t.column("mask_rle").to_pylist()))
