"""Source files as the pipeline may touch them: stat-only walking, regular files only, capped and timed reads.

A dataset folder can hold anything a file system can: symlink loops, dangling links, FIFOs, device
nodes, sockets, files the user may not read. Opening a FIFO blocks until a writer comes, reading
/dev/zero never ends, and a stale network mount can block a read for ever. So nothing here opens a
path before stat says it is a regular file under the size cap, a file is opened non-blocking and
checked again on its descriptor, and every read of source bytes runs against a deadline. Each problem
becomes a per-file reason (a SampleError or a FileProblem) that readers quarantine and the rest of the
build ignores; no OSError escapes.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from pipelines.errors import Reason, SampleError

CHUNK = 1 << 20
T = TypeVar("T")


@dataclass(frozen=True)
class Limits:
    """How much of one source file may be read, and for how long (ingest.max_file_bytes / read_timeout_s)."""

    max_bytes: int = 8 << 30
    timeout_s: float = 600.0


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class FileProblem:
    """Why one path under a dataset root cannot be used as a source file."""

    rel: str
    reason: Reason
    message: str

    def error(self) -> SampleError:
        return SampleError(self.reason, self.message, self.rel)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "FIFO (named pipe)"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket"), (stat.S_ISDIR, "directory")):
        if test(mode):
            return name
    return "special file"


def _stat_problem(path: Path, rel: str, exc: OSError) -> FileProblem:
    """The reason a stat that follows links failed."""
    if exc.errno == errno.ELOOP:
        return FileProblem(rel, Reason.SYMLINK_LOOP, f"'{rel}' is a symlink loop (it never reaches a file); "
                           "remove the link or point it at the real file")
    if exc.errno in (errno.ENOENT, errno.ENOTDIR) and os.path.islink(path):
        return FileProblem(rel, Reason.DANGLING_LINK, f"'{rel}' is a symlink to {os.readlink(path)!r}, which does "
                           "not exist; restore the target or remove the link")
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return FileProblem(rel, Reason.DANGLING_LINK, f"'{rel}' vanished while the dataset was read; rerun")
    return FileProblem(rel, Reason.UNREADABLE, f"'{rel}' cannot be read ({os.strerror(exc.errno or 0) or exc}); "
                       "fix its permissions or remove it")


def file_problem(path: Path, rel: str, limits: Limits = DEFAULT_LIMITS,
                 st: os.stat_result | None = None) -> tuple[os.stat_result | None, FileProblem | None]:
    """(stat following links, None) for a usable regular file, else (stat or None, the problem)."""
    if st is None:
        try:
            st = os.stat(path)
        except OSError as exc:
            return None, _stat_problem(path, rel, exc)
    if not stat.S_ISREG(st.st_mode):
        return st, FileProblem(rel, Reason.NOT_A_REGULAR_FILE, f"'{rel}' is a {_kind(st.st_mode)}, not a regular "
                               "file; medbench never opens it (it could block or never end): replace it with the file")
    if st.st_size > limits.max_bytes:
        return st, FileProblem(rel, Reason.FILE_TOO_LARGE, f"'{rel}' is {st.st_size} bytes, over the limit "
                               f"{limits.max_bytes} (ingest.max_file_bytes); raise the limit if the file is genuine")
    return st, None


def check_file(path: Path | str, rel: str = "", limits: Limits = DEFAULT_LIMITS) -> os.stat_result:
    """stat of a usable regular source file, or the SampleError that says why it is not one. The file is opened
    (non-blocking) and closed once, so a file the user may not read is named ``unreadable`` here, before a
    decoder turns the refusal into a vaguer error."""
    path, rel = Path(path), rel or Path(path).name
    st, problem = file_problem(path, rel, limits)
    if problem is not None:
        raise problem.error()
    os.close(_open_regular(path, rel))
    return st


def with_timeout(fn: Callable[[], T], seconds: float, rel: str, what: str = "reading") -> T:
    """``fn()`` in a daemon thread; a SampleError (read_timeout) when it is not done in ``seconds``.

    A read blocked in the kernel cannot be interrupted, so the thread is abandoned (it ends with the
    process); the caller goes on with the next file."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below
            box["error"] = exc

    thread = threading.Thread(target=run, name=f"medbench-read:{rel}"[:60], daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise SampleError(Reason.READ_TIMEOUT, f"{what} '{rel}' took longer than {seconds:g} s "
                          "(ingest.read_timeout_s); check the storage it lives on", rel)
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


def _open_regular(path: Path, rel: str) -> int:
    """A read-only descriptor, opened without blocking and checked to be a regular file on the descriptor
    itself (a path swapped for a FIFO after the stat is still refused)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise _stat_problem(path, rel, exc).error() from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise FileProblem(rel, Reason.NOT_A_REGULAR_FILE, f"'{rel}' is a {_kind(st.st_mode)}, not a regular "
                          "file; replace it with the file").error()
    return fd


def _consume(path: Path, rel: str, limits: Limits, sink: Callable[[bytes], None]) -> None:
    fd = _open_regular(path, rel)
    total = 0
    try:
        while chunk := os.read(fd, CHUNK):
            total += len(chunk)
            if total > limits.max_bytes:
                raise SampleError(Reason.FILE_TOO_LARGE, f"'{rel}' grew past the limit {limits.max_bytes} bytes "
                                  "while it was read (ingest.max_file_bytes)", rel)
            sink(chunk)
    except OSError as exc:
        raise _stat_problem(path, rel, exc).error() from None
    finally:
        os.close(fd)


def read_bytes(path: Path | str, rel: str = "", limits: Limits = DEFAULT_LIMITS) -> bytes:
    """The whole file, for text and annotation files: regular files only, capped and timed."""
    path, rel = Path(path), rel or Path(path).name
    check_file(path, rel, limits)
    parts: list[bytes] = []
    with_timeout(lambda: _consume(path, rel, limits, parts.append), limits.timeout_s, rel)
    return b"".join(parts)


def sha256_file(path: Path | str, rel: str = "", limits: Limits = DEFAULT_LIMITS) -> str:
    """sha256 of a source file, read in chunks under the same cap and deadline."""
    path, rel = Path(path), rel or Path(path).name
    check_file(path, rel, limits)
    h = hashlib.sha256()
    with_timeout(lambda: _consume(path, rel, limits, h.update), limits.timeout_s, rel, "hashing")
    return h.hexdigest()


@dataclass(frozen=True)
class Entry:
    """One path met while walking a dataset root."""

    rel: str
    path: Path
    st: os.stat_result | None = None  # a usable regular file
    problem: FileProblem | None = None
    link: str | None = None  # a directory symlink that is not followed (outside the root): its target


def walk(root: Path, limits: Limits = DEFAULT_LIMITS, follow_outside: bool = False) -> Iterator[Entry]:
    """Every file under ``root`` in sorted order, from stat calls only (nothing is opened).

    Directory symlinks are followed when their target lies inside the root (or ``follow_outside``); a link
    back to a folder on the current path (a loop) ends as a ``symlink_loop`` entry; links to directories
    outside the root are listed with their target, not descended."""
    root = Path(root)
    real_root = os.path.realpath(root)
    try:
        top = os.stat(root)
    except OSError as exc:
        yield Entry(".", root, problem=_stat_problem(root, ".", exc))
        return
    yield from _walk_dir(root, "", real_root, frozenset({(top.st_dev, top.st_ino)}), limits, follow_outside)


def _walk_dir(folder: Path, prefix: str, real_root: str, ancestors: frozenset, limits: Limits,
              follow_outside: bool) -> Iterator[Entry]:
    try:
        with os.scandir(folder) as it:
            names = sorted(e.name for e in it)
    except OSError as exc:
        rel = prefix.rstrip("/") or "."
        yield Entry(rel, folder, problem=FileProblem(rel, Reason.UNREADABLE, f"folder '{rel}' cannot be listed "
                                                     f"({os.strerror(exc.errno or 0) or exc}); fix its permissions"))
        return
    for name in names:
        path, rel = folder / name, f"{prefix}{name}"
        try:
            lst = os.lstat(path)
        except OSError as exc:
            yield Entry(rel, path, problem=_stat_problem(path, rel, exc))
            continue
        is_link = stat.S_ISLNK(lst.st_mode)
        if is_link:
            try:
                st = os.stat(path)
            except OSError as exc:
                yield Entry(rel, path, problem=_stat_problem(path, rel, exc))
                continue
        else:
            st = lst
        if stat.S_ISDIR(st.st_mode):
            if is_link:
                target = os.path.realpath(path)
                inside = target == real_root or target.startswith(real_root.rstrip(os.sep) + os.sep)
                if not (inside or follow_outside):
                    yield Entry(rel, path, link=target)
                    continue
            key = (st.st_dev, st.st_ino)
            if key in ancestors:
                yield Entry(rel, path, problem=FileProblem(rel, Reason.SYMLINK_LOOP, f"'{rel}' leads back to a "
                                                           "folder that contains it (a loop); remove the link"))
                continue
            yield from _walk_dir(path, f"{rel}/", real_root, ancestors | {key}, limits, follow_outside)
            continue
        st, problem = file_problem(path, rel, limits, st)
        yield Entry(rel, path, st=None if problem else st, problem=problem)


def tree_problems(root: Path, limits: Limits = DEFAULT_LIMITS) -> list[FileProblem]:
    """The files under ``root`` that no reader may open, each with its reason (stat and access checks only)."""
    out = []
    for e in walk(root, limits):
        if e.problem is not None:
            out.append(e.problem)
        elif e.st is not None and not os.access(e.path, os.R_OK):
            out.append(FileProblem(e.rel, Reason.UNREADABLE, f"'{e.rel}' cannot be read (permission denied); fix "
                                   "its permissions or remove it"))
    return out
