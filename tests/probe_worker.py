"""A function for worker processes to run in tests: whether a module is loaded in the worker."""

import sys


def loaded(name: str) -> bool:
    return name in sys.modules


def pid_after(seconds: float) -> tuple[int, float, float]:
    """(this process's id, when it started, when it ended) around ``seconds`` of sleep (time another process can
    overlap)."""
    import os
    import time
    start = time.time()
    time.sleep(seconds)
    return os.getpid(), start, time.time()


def refuse(why: str) -> None:
    raise ValueError(why)


def frozen(_job: object) -> int:
    """How many objects this process's garbage collector has frozen (left out of its collections)."""
    import gc
    return gc.get_freeze_count()


def parent_and_loaded(name: str) -> tuple[int, bool]:
    """(the process that forked this worker, whether module ``name`` is loaded here)."""
    import os
    return os.getppid(), name in sys.modules
