"""One way to spread independent jobs over processes (ingest, describe, render, ROI annotation)."""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import gc
import multiprocessing
import os
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from functools import partial
from multiprocessing import forkserver, resource_tracker
from typing import TypeVar


@contextmanager
def one_thread_each() -> Iterator[None]:
    """While the workers run: one BLAS/OpenMP thread and one OpenCV thread in this process, so the workers it forks
    start with the same. The workers already fill the cores; each library's own pool on top of them (OpenBLAS
    starts one thread per core in every process, and its idle threads spin) made describe and render take twice as
    long on 2 cores (bench/README.md). Set in the parent, before the fork: a forked child that resizes a thread
    pool its parent started can wait forever for threads it does not have."""
    import cv2
    from threadpoolctl import threadpool_limits
    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        cv2.setNumThreads(before)


def _no_collection_at_exit() -> None:
    """At interpreter exit, before CPython's shutdown collections: everything alive is frozen (`gc.freeze`), so
    those collections skip it. A process holding numpy, pandas, Arrow, OpenCV and Dagster spent 0.6-1.0 s in
    them after its last line (bench/README.md), the worker servers after the build had returned (with its output
    pipe still open, so whatever reads it waited). What exits this way still runs its atexit handlers and
    `weakref.finalize` callbacks, flushes its standard streams and clears its modules; only the ``__del__`` of
    objects held in reference cycles no longer runs, and nothing here relies on it (files are closed by their
    ``with`` blocks). Workers and runs end with ``os._exit`` anyway."""
    gc.freeze()


atexit.register(_no_collection_at_exit)  # atexit handlers run before shutdown collects


# What every worker needs, loaded once in the fork server (with the first pool's module, `lean_context`).
LEAN_PRELOAD = ("numpy", "pandas", "pyarrow", "cv2", "scipy.ndimage")
ONE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
_SERVER_LOCK = threading.Lock()
T = TypeVar("T")
_EXPECTED: list[str] = []  # modules this process's workers will run (expect_worker_modules)


_SERVER_FIELDS = ("_forkserver_pid", "_forkserver_address", "_forkserver_alive_fd")


def _server() -> object | None:
    """multiprocessing's record of this process's fork server (one per process, a module global), when its fields
    are CPython 3.11's; else None (nothing is then shared or forgotten, and children fork their workers)."""
    server = getattr(forkserver, "_forkserver", None)
    return server if server is not None and all(hasattr(server, f) for f in _SERVER_FIELDS) else None


def _forget(server: object) -> None:
    """Drop the record of a server (a parent's, or one this process lets go): its next pool starts a server of its
    own."""
    vars(server).pop("ensure_running", None)
    for f in _SERVER_FIELDS:
        setattr(server, f, None)


_SPARE: dict | None = None  # the record of a server started ahead for later forks (start_spare_server)


def _record(server: object) -> dict:
    return {f: getattr(server, f) for f in (*_SERVER_FIELDS, "_preload_modules")}


def _install(server: object, record: dict) -> None:
    for f, v in record.items():
        setattr(server, f, v)


def _adopt_inherited_server() -> None:
    """In a forked child: the record of the fork server names the parent's server, which the child can reach
    (its socket, and the pipe that keeps it alive while any holder lives) but which multiprocessing's own check
    cannot look at (it waits on the server's pid, and the server is not the child's child), so the first pool
    the child asks for would fail. The check is replaced by one that asks whether the pid is alive; the child's
    workers then come from the parent's server when it holds what they need (:func:`lean_context`): a build's
    runs and their forks share the one server the build started while it loaded its own modules, instead of
    each loading the same libraries again (about 2 s of CPU per run)."""
    global _SPARE
    _EXPECTED.clear()  # what the parent's workers run is the parent's to name
    _SPARE = None  # the parent's to take up
    server = _server()
    if server is None or server._forkserver_pid is None:
        return
    pid = server._forkserver_pid

    def ensure_running() -> None:
        resource_tracker.ensure_running()
        try:
            os.kill(pid, 0)  # the parent's server still runs: nothing to start
        except OSError:
            _forget(server)
            type(server).ensure_running(server)

    server.ensure_running = ensure_running


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_adopt_inherited_server)


def expect_worker_modules(*modules: str) -> None:
    """Name modules the workers of this process will run, so that the fork server, whenever it starts, loads them
    once, instead of every worker importing them (scikit-learn for the export checks: 0.7 s per worker). Starts
    nothing: a run that never asks for workers pays nothing."""
    _EXPECTED.extend(m for m in modules if m not in _EXPECTED)


def start_workers_early(*modules: str, fresh: bool = False) -> None:
    """Start this process's worker server now, with ``modules`` (and those named by :func:`expect_worker_modules`):
    it loads them in the background while this process goes on, so the first pool finds it ready instead of
    waiting about a second for its imports. For a run whose later steps spread over workers. ``fresh``: for the
    processes this one forks next, which need ``modules`` alone: a server this process started earlier without
    all of them is let go (it ends once the workers it forked have) and a new one loads just them."""
    global _SPARE
    server = _server()
    own = server is not None and "ensure_running" not in vars(server)  # not a parent's
    if fresh and own:
        if server._forkserver_pid is not None and not set(modules) <= set(server._preload_modules or ()):
            alive = server._forkserver_alive_fd
            _forget(server)
            os.close(alive)  # the server ends when no process holds this pipe's end any more
        if server._forkserver_pid is None and _SPARE is not None and set(modules) <= set(_SPARE["_preload_modules"]):
            _install(server, _SPARE)  # started ahead with them (start_spare_server)
            _SPARE = None
    if fresh:
        _EXPECTED.clear()
    expect_worker_modules(*modules)
    lean_context()


def start_spare_server(*modules: str) -> None:
    """Start a second worker server now, with ``modules``, for the processes this one forks later: it loads them in
    the background while this process's pools (and the processes it forks meanwhile) keep the current server;
    :func:`start_workers_early` with ``fresh`` takes it up when it holds what is asked. `medbench build` starts
    the cross-dataset runs' server this way while it loads its own modules, on a core that would otherwise wait.
    Nothing is started where the fork server cannot be, or in a process using its parent's server."""
    global _SPARE
    server = _server()
    if server is None or "ensure_running" in vars(server) or _SPARE is not None or \
            "forkserver" not in multiprocessing.get_all_start_methods():
        return
    current, expected = _record(server), list(_EXPECTED)
    _forget(server)  # set aside while the spare starts: put back below
    _EXPECTED[:] = modules
    try:
        lean_context()
        if server._forkserver_pid is not None:
            _SPARE = _record(server)
    finally:
        _install(server, current)
        _EXPECTED[:] = expected


def lean_context(also: tuple[str, ...] = ()) -> multiprocessing.context.BaseContext:
    """Workers forked from a small fork server, not from this process. A forked child's resident set starts as
    its parent's, so a worker forked from a build process that has imported Dagster, scikit-learn and `datasets`
    and run earlier steps carried 400-770 MB before it read its first volume (bench/README.md). The server is
    started once per process, with its libraries single-threaded from the start (the environment is read when
    OpenBLAS loads; resizing a pool inherited over a fork can hang), unless the process was forked from one whose
    server holds every module named for its workers: then that server forks them (:func:`_adopt_inherited_server`).
    Where there is no fork server (not Linux/macOS) or it cannot be started, a plain fork. ``also``: modules the
    server loads too when this call starts it (the module of the first pool's function: its workers then fork
    with it loaded instead of each importing it, half a second apiece; a module that does not import is skipped
    by the server), after those named by :func:`expect_worker_modules`."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    with _SERVER_LOCK:
        saved = {k: os.environ.get(k) for k in ONE_THREAD_ENV}
        os.environ.update(ONE_THREAD_ENV)
        try:
            server = _server()
            needed = {*LEAN_PRELOAD, *_EXPECTED}  # ``also`` only saves its workers an import: not asked of a parent's
            if server is not None and "ensure_running" in vars(server) and \
                    not needed <= set(server._preload_modules or ()):
                _forget(server)  # a parent's server without this process's modules: each worker would import them
            if server is None or server._forkserver_pid is None:
                wanted = [*LEAN_PRELOAD, *_EXPECTED, *(m for m in also if m != "__main__")]
                forkserver.set_forkserver_preload(list(dict.fromkeys(wanted)))
            (server.ensure_running if server is not None else forkserver.ensure_running)()  # a no-op once running
        except ChildProcessError:  # a parent's server whose record this process could not take over
            return multiprocessing.get_context("fork")
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    return multiprocessing.get_context("forkserver")


def _worker_start() -> None:
    """A lean worker's initializer. OpenCV at one thread (its pool is made on first use, so setting it here resizes
    nothing), and what the worker starts with (the server's imports) frozen (`gc.freeze`), so that its full
    collections walk only what its jobs make (0.4 of 0.5 s of collections per described volume)."""
    import cv2
    cv2.setNumThreads(1)
    gc.freeze()


@contextmanager
def _main_script_not_rerun() -> Iterator[None]:
    """While workers start: multiprocessing runs the parent's main script again in every worker it does not fork
    from the parent (as ``__mp_main__``), and `medbench`'s script imports the whole command line (about a second
    per worker, and the memory of typer, rich and the rest). Nothing a worker runs lives in a script, so the
    script's path is hidden meanwhile; a main module run by name (``python -m``) is left as it is."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or path is None or getattr(main, "__spec__", None) is not None:
        yield
        return
    del main.__file__
    try:
        yield
    finally:
        main.__file__ = path


def _then_release(fn: Callable, job):
    """One job in a worker, whose freed memory then goes back to the system: the next job (a second volume)
    starts from the worker's imports, not from the first one's heap."""
    try:
        return fn(job)
    finally:
        release_freed_memory(collect=False)


def ordered_map(fn: Callable, jobs: Iterable, workers: int, release: bool = False) -> Iterator:
    """``fn`` over ``jobs``, results in job order: in ``workers`` processes when there are more than one and at
    least two jobs (one job at a time each, so memory stays bounded by one job per process), else inline.
    The workers come from the lean fork server (`lean_context`). ``fn`` and the jobs must pickle, and ``fn``
    must be importable by its module's name. ``release``: a worker hands its freed memory back after each job
    (for jobs that each hold a volume)."""
    jobs = list(jobs)
    if workers > 1 and len(jobs) > 1:
        with _worker_pool([fn], min(workers, len(jobs))) as (pool, _):
            with _main_script_not_rerun():  # the workers start while map submits the jobs
                results = pool.map(partial(_then_release, fn) if release else fn, jobs, chunksize=1)
            yield from results
    else:
        yield from map(fn, jobs)


@contextmanager
def _worker_pool(fns: list[Callable], workers: int) -> Iterator[tuple[ProcessPoolExecutor, bool]]:
    """A pool of ``workers`` lean workers (`lean_context`, its server loading the functions' modules): with
    OpenCV at one thread each, and, where the workers are plain forks, this process's thread limits for them to
    inherit. Yields the pool and whether its workers are plain forks of this process."""
    ctx = lean_context(tuple(dict.fromkeys(getattr(fn, "__module__", None) or "__main__" for fn in fns)))
    forked = ctx.get_start_method() == "fork"  # forked workers take their thread limits from this process
    with one_thread_each() if forked else nullcontext(), \
            ProcessPoolExecutor(max_workers=workers, mp_context=ctx,
                                initializer=None if forked else _worker_start) as pool:
        yield pool, forked


def _outcome(fn: Callable, args: tuple):
    """``fn(*args)``, or the exception it raised (returned, so one failing job does not hide the others')."""
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - handed to the caller, who names the job and raises
        exc.add_note(traceback.format_exc())  # where it was raised, which a worker's exception does not carry back
        return exc


def run_beside(main: Callable[[], T], jobs: list[tuple[Callable, tuple]], workers: int,
               spread: int = 1) -> tuple[T, list]:
    """``main()`` in this process while ``jobs`` (function, arguments) run beside it, one after another in one
    worker (or over ``spread`` workers), when ``workers`` > 1 (else all here, in order): for a step whose largest
    part spreads over workers of its own and whose small parts would otherwise wait for it with a core idle, or
    whose serial part can run while its spread part does. Returns main's result and each job's result in job
    order, or the exception it raised (checked by the caller). Same worker rules as :func:`ordered_map`."""
    if workers < 2 or not jobs:
        return main(), [_outcome(fn, args) for fn, args in jobs]
    with _worker_pool([fn for fn, _ in jobs], max(1, min(spread, len(jobs)))) as (pool, forked):
        if forked:  # a fork copies the process from the thread that starts it: start them from this one
            futures = _submit_all(pool, jobs)
            return main(), [f.result() for f in futures]
        with ThreadPoolExecutor(1) as starter:
            pending = starter.submit(_submit_all, pool, jobs)
            first = main()
            return first, [f.result() for f in pending.result()]


def _submit_all(pool: ProcessPoolExecutor, jobs: list[tuple[Callable, tuple]]) -> list[Future]:
    """Each job submitted to the pool. A submit starts a worker and waits until the fork server has forked it,
    which, for a server started with the run, is after it has loaded its modules (about 2 s for the export's,
    scikit-learn included): :func:`run_beside` submits from a thread of its own, so its main part runs meanwhile
    instead of waiting with a core idle."""
    with _main_script_not_rerun():
        return [pool.submit(_outcome, fn, args) for fn, args in jobs]


@contextmanager
def forked_pool(workers: int) -> Iterator[ProcessPoolExecutor]:
    """A pool of ``workers`` plain forks of this process, made when the first job is submitted: they inherit
    everything this process holds at that moment (rows, fitted features), so only a job's index and its result
    cross between processes. For jobs over data that costs more to pickle than to use; the data must be in place
    before the first submit. One BLAS and one OpenCV thread each (:func:`one_thread_each`)."""
    with one_thread_each(), ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        yield pool


def forked_map(fn: Callable[[int], T], n: int, workers: int) -> list[T]:
    """``fn(0)``, ..., ``fn(n - 1)`` over ``workers`` plain forks of this process (:func:`forked_pool`), results in
    order; here, in order, when ``workers`` < 2, ``n`` < 2 or the platform cannot fork."""
    if workers < 2 or n < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return [fn(i) for i in range(n)]
    with forked_pool(min(workers, n)) as pool:
        return list(pool.map(fn, range(n)))


FULL_COLLECTION_EVERY = 100  # young collections between two full ones (Python's default: 10)


def run_spread(jobs: list[tuple[Callable, tuple]], workers: int) -> list:
    """Each job (function, arguments) over ``workers`` processes, taken in list order as workers come free (put the
    long ones first), or all here when ``workers`` < 2; each job's result in job order, or the exception it raised
    (checked by the caller)."""
    return run_beside(lambda: None, jobs, workers, spread=workers)[1]


def lighter_collections() -> None:
    """What is alive now (the imports, caches such as MeSH, what earlier steps keep) is frozen (`gc.freeze`), and
    full collections come a tenth as often. A step that builds millions of objects (candidate rows) set off a
    full collection every few hundred thousand allocations, each walking everything alive: 2.5 s of the
    candidates step at real size, 0.4 s with both (the collection at the step's start included). Cycles still
    go, a full collection later; most of what a step drops has none and is freed at once by its reference count."""
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)


def release_freed_memory(collect: bool = True) -> None:
    """Hand the memory freed by earlier steps back to the system, so a step that runs in the same process as the
    ones before it starts from what is alive, not from their peak: Arrow's pool (mimalloc keeps freed pages for
    reuse) and the C heap (glibc's malloc_trim; a no-op where the C library has none), after collecting the
    cycles that still hold an earlier step's frames (``collect``; a full collection of a process holding
    Dagster and pandas takes a good fraction of a second, so the frequent callers skip it). Then the step's
    own collections are made lighter (:func:`lighter_collections`)."""
    import pyarrow as pa
    if collect:
        gc.collect()
        lighter_collections()
    pa.default_memory_pool().release_unused()
    name = ctypes.util.find_library("c")
    trim = getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    if trim is not None:
        trim(0)
