"""Run hygiene on one data root: one build at a time, and no leftovers of killed runs.

`staged_dir` writes `.NAME.staging-PID` / `.NAME.old-PID` folders beside their target; a run
killed mid-swap leaves them behind (hundreds of MB). They are removed at the start of the next
run when the process that made them is gone. A lock file keeps two builds off one data root.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path

STAGING = re.compile(r"^\..+\.(staging|old)-(\d+)$")
LOCK_NAME = ".medbench.lock"


class BuildLocked(RuntimeError):
    pass


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def stale_staging(data_root: Path, depth: int = 3) -> list[Path]:
    """Staging/old folders under the data root whose owning process is no longer running."""
    out: list[Path] = []
    frontier = [Path(data_root)]
    for _ in range(depth):
        nxt = []
        for folder in frontier:
            try:
                children = [p for p in folder.iterdir() if p.is_dir() and not p.is_symlink()]
            except OSError:
                continue
            for child in children:
                m = STAGING.match(child.name)
                if m:
                    if not pid_alive(int(m.group(2))):
                        out.append(child)
                elif not child.name.startswith("."):
                    nxt.append(child)
        frontier = nxt
    return sorted(out)


def remove_stale_staging(data_root: Path) -> list[Path]:
    stale = stale_staging(data_root)
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale


@contextmanager
def build_lock(data_root: Path):
    """Hold an exclusive lock on the data root; refuse at once, naming the holder, when it is taken."""
    root = Path(data_root)
    root.mkdir(parents=True, exist_ok=True)
    path = root / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise BuildLocked(f"another medbench build (pid {holder}) is using {root}; wait for it to finish "
                              f"or use another --data-root") from exc
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the lock
