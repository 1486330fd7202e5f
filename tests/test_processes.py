"""Worker processes run their libraries single-threaded, forking after the parent used its thread pools
neither hangs nor leaves the parent limited, and workers start small whatever the size of the process that
asks for them."""

from __future__ import annotations

import multiprocessing
import textwrap
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
from threadpoolctl import threadpool_info

from pipelines.processes import ordered_map


def _threads(_: int) -> tuple[int, int, float]:
    """(widest BLAS/OpenMP pool, OpenCV threads, a BLAS product) as seen inside a worker."""
    a = np.arange(400 * 400, dtype=np.float64).reshape(400, 400) / 1e5
    return max((i["num_threads"] for i in threadpool_info()), default=1), cv2.getNumThreads(), float((a @ a).sum())


@pytest.mark.timeout(120)
def test_workers_run_one_thread_each_after_the_parent_used_its_pools():
    a = np.random.default_rng(0).random((600, 600))
    _ = a @ a  # the parent's BLAS pool is started before the fork
    cv2.resize(np.zeros((1000, 1000), np.uint8), (500, 500))
    before = (max(i["num_threads"] for i in threadpool_info()), cv2.getNumThreads())
    out = list(ordered_map(_threads, range(4), 2))
    expected = float((np.arange(400 * 400, dtype=np.float64).reshape(400, 400) / 1e5 @
                      (np.arange(400 * 400, dtype=np.float64).reshape(400, 400) / 1e5)).sum())
    assert [o[:2] for o in out] == [(1, 1)] * 4
    assert all(o[2] == pytest.approx(expected, rel=1e-12) for o in out)
    assert (max(i["num_threads"] for i in threadpool_info()), cv2.getNumThreads()) == before  # the parent is restored


def _rss_mb(_: int) -> int:
    """This process's resident memory in MB (Linux's /proc)."""
    with open("/proc/self/status", encoding="ascii") as fh:
        return int(next(line for line in fh if line.startswith("VmRSS:")).split()[1]) // 1024


def _nested(n: int) -> list[int]:
    """ordered_map called from a process that was itself forked from the one that started the fork server."""
    return list(ordered_map(_rss_mb, range(n), 2))


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs Linux's /proc to read resident memory")
@pytest.mark.timeout(120)
def test_workers_do_not_start_with_the_memory_of_the_process_that_asks():
    ballast = np.ones(400 * 2**20, np.uint8)  # 400 MB written, so resident, in this process
    parent = _rss_mb(0)
    workers = list(ordered_map(_rss_mb, range(4), 2))
    assert parent > 400
    assert max(workers) < parent - 300, (parent, workers)  # a forked worker would start at the parent's size
    ballast[0] = 0


@pytest.mark.timeout(120)
def test_a_process_forked_after_the_fork_server_started_still_gets_workers():
    list(ordered_map(_rss_mb, range(2), 2))  # this process starts the fork server
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
        assert len(pool.submit(_nested, 3).result(timeout=100)) == 3


@pytest.mark.timeout(120)
def test_workers_do_not_run_the_main_script_again(tmp_path):
    """`medbench` is a script that imports the command line; a worker that ran it again would carry all of it."""
    import subprocess
    import sys

    from pipelines.config import PROJECT_ROOT
    script = tmp_path / "main_script.py"
    script.write_text("import sys\nimport wave  # a module nothing else loads\n"
                      f"sys.path.insert(0, {str(PROJECT_ROOT)!r})\n"
                      "from pipelines.processes import ordered_map\nfrom tests.probe_worker import loaded\n"
                      "if __name__ == '__main__':\n    print(list(ordered_map(loaded, ['wave', 'wave'], 2)))\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=100)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[False, False]"


@pytest.mark.timeout(120)
def test_jobs_beside_run_in_another_process_while_main_runs_and_failures_come_back():
    import os

    from pipelines.processes import run_beside
    from tests.probe_worker import pid_after, refuse
    main, found = run_beside(lambda: pid_after(1.5), [(pid_after, (1.0,)), (refuse, ("planted",)),
                                                      (pid_after, (0.2,))], workers=2)
    assert main[0] == os.getpid()  # main runs here
    assert found[0][0] != os.getpid() and found[2][0] == found[0][0]  # the jobs, one after another in one worker
    assert found[0][1] < main[2] and main[1] < found[0][2]  # the first job and main ran at the same time
    assert isinstance(found[1], ValueError) and "planted" in str(found[1])
    assert any("refuse" in note for note in getattr(found[1], "__notes__", []))  # where it was raised
    main, found = run_beside(lambda: pid_after(0.0), [(pid_after, (0.0,))], workers=1)
    assert main[0] == found[0][0] == os.getpid()  # one worker: everything here, main first
    assert main[2] <= found[0][1]
    main, found = run_beside(lambda: pid_after(1.0), [(pid_after, (1.0,)), (pid_after, (1.0,))], workers=2,
                             spread=2)
    assert len({main[0], found[0][0], found[1][0]}) == 3  # spread: each job in a worker of its own, main here
    assert found[0][1] < found[1][2] and found[1][1] < found[0][2] and found[0][1] < main[2]  # all at once


def test_a_spread_queue_keeps_two_workers_busy_and_returns_results_in_job_order():
    import os

    from pipelines.processes import run_spread
    from tests.probe_worker import pid_after, refuse
    # a long job first, then three short ones: the other worker takes the short ones while the long one runs
    found = run_spread([(pid_after, (1.2,)), (pid_after, (0.3,)), (refuse, ("planted",)), (pid_after, (0.3,))], 2)
    long, short, failed, last = found
    assert os.getpid() not in {long[0], short[0], last[0]} and long[0] != short[0]
    assert short[0] == last[0] and last[2] < long[2]  # both short jobs ran in the other worker before the long ended
    assert isinstance(failed, ValueError) and "planted" in str(failed)
    here = run_spread([(pid_after, (0.0,)), (pid_after, (0.0,))], 1)
    assert here[0][0] == here[1][0] == os.getpid() and here[0][2] <= here[1][1]  # one worker: here, in order


@pytest.mark.timeout(120)
@pytest.mark.parametrize("expected, seen", [(False, "[False, False]"), (True, "[True, True]")])
def test_modules_named_for_the_workers_are_loaded_by_the_fork_server(expected, seen):
    """A module named with expect_worker_modules before the first pool is in every worker without the worker
    importing it (the server loaded it); unnamed, the workers never see it."""
    from tests.fresh_python import run_fresh
    out = run_fresh("from pipelines.processes import expect_worker_modules, ordered_map\n"
                    "from tests.probe_worker import loaded\n"
                    + ("expect_worker_modules('colorsys')\n" if expected else "")
                    + "print(list(ordered_map(loaded, ['colorsys', 'colorsys'], 2)))\n")
    assert out.strip() == seen


@pytest.mark.timeout(120)
def test_a_server_started_early_is_the_one_the_first_pool_uses():
    """start_workers_early starts the worker server at once (before any pool) with the modules it names; the first
    pool then forks its workers from that server, so they have the modules without importing them."""
    from tests.fresh_python import run_fresh
    out = run_fresh("from multiprocessing import forkserver\n"
                    "from pipelines.processes import ordered_map, start_workers_early\n"
                    "from tests.probe_worker import loaded\n"
                    "start_workers_early('colorsys')\n"
                    "pid = forkserver._forkserver._forkserver_pid\n"
                    "print(pid is not None, list(ordered_map(loaded, ['colorsys', 'colorsys'], 2)),\n"
                    "      forkserver._forkserver._forkserver_pid == pid)\n")
    assert out.strip() == "True [True, True] True"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("child_needs, shared", [("colorsys", True), ("tabnanny", False)])
def test_a_forked_child_takes_its_workers_from_the_parents_server_when_it_holds_their_modules(child_needs, shared):
    """A process starts the worker server with a module (as `medbench build` does before its runs fork); a child
    forked from it that names only that module gets workers forked by that very server (their parent is the
    server, and they hold the module without importing it). A child naming a module the server lacks starts a
    server of its own (so its workers hold what they need), and its workers still run."""
    from tests.fresh_python import run_fresh
    out = run_fresh(textwrap.dedent(f"""
        import multiprocessing
        from multiprocessing import forkserver
        from concurrent.futures import ProcessPoolExecutor
        from pipelines.processes import start_workers_early
        start_workers_early('colorsys')
        server = forkserver._forkserver._forkserver_pid
        def child():
            from pipelines.processes import expect_worker_modules, ordered_map
            from tests.probe_worker import parent_and_loaded
            expect_worker_modules({child_needs!r})
            return list(ordered_map(parent_and_loaded, [{child_needs!r}] * 2, 2))
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
            seen = pool.submit(child).result()
        print([p == server for p, _ in seen], [have for _, have in seen])
    """))
    assert out.strip() == (f"{[shared] * 2} [True, True]")


@pytest.mark.timeout(120)
def test_a_fresh_server_replaces_one_without_the_modules_and_the_old_one_ends():
    """`medbench build` starts a server for the partitions' workers, then one for the cross-dataset runs
    (``fresh``): the first ends (nothing holds it any more), and the workers of a child forked after come from
    the second, with its module and without the first one's."""
    from tests.fresh_python import run_fresh
    out = run_fresh(textwrap.dedent("""
        import multiprocessing, os, time
        from multiprocessing import forkserver
        from concurrent.futures import ProcessPoolExecutor
        from pipelines.processes import start_workers_early
        start_workers_early('colorsys')
        first = forkserver._forkserver._forkserver_pid
        start_workers_early('colorsys', fresh=True)  # it holds them: kept
        kept = forkserver._forkserver._forkserver_pid == first
        start_workers_early('tabnanny', fresh=True)
        second = forkserver._forkserver._forkserver_pid
        for _ in range(100):  # the first server ends (a zombie until reaped): reap it
            if os.waitpid(first, os.WNOHANG)[0] == first:
                break
            time.sleep(0.05)
        else:
            raise SystemExit("the first server is still running")
        def child():
            from pipelines.processes import expect_worker_modules, ordered_map
            from tests.probe_worker import parent_and_loaded
            expect_worker_modules('tabnanny')
            return [(p, a, b) for (p, a), (_, b) in zip(ordered_map(parent_and_loaded, ['tabnanny'] * 2, 2),
                                                        ordered_map(parent_and_loaded, ['colorsys'] * 2, 2))]
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
            seen = pool.submit(child).result()
        print(kept, second != first, [(p == second, a, b) for p, a, b in seen])
    """))
    assert out.strip() == "True True [(True, True, False), (True, True, False)]"


@pytest.mark.timeout(120)
def test_a_spare_server_waits_for_the_later_forks_and_the_earlier_keep_theirs():
    """`medbench build` starts the partitions' server and a spare one for the later runs at once: a child forked
    before the switch takes its workers from the first (with its module only), one forked after from the spare
    (with the spare's module only); the first server then ends once its last holder has."""
    from tests.fresh_python import run_fresh
    out = run_fresh(textwrap.dedent("""
        import multiprocessing, os, time
        from multiprocessing import forkserver
        from concurrent.futures import ProcessPoolExecutor
        from pipelines.processes import start_spare_server, start_workers_early
        start_workers_early('colorsys')
        start_spare_server('tabnanny')
        first = forkserver._forkserver._forkserver_pid
        def child(name):
            from pipelines.processes import expect_worker_modules, ordered_map
            from tests.probe_worker import parent_and_loaded
            expect_worker_modules(name)
            return [(p, a, b) for (p, a), (_, b) in zip(ordered_map(parent_and_loaded, [name] * 2, 2),
                                                        ordered_map(parent_and_loaded, ['tabnanny'] * 2, 2))]
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
            before = pool.submit(child, 'colorsys').result()
        start_workers_early('tabnanny', fresh=True)
        spare = forkserver._forkserver._forkserver_pid
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
            after = pool.submit(child, 'tabnanny').result()
        for _ in range(100):
            if os.waitpid(first, os.WNOHANG)[0] == first:
                break
            time.sleep(0.05)
        else:
            raise SystemExit("the first server is still running")
        print(spare != first, [(p == first, a, b) for p, a, b in before], [(p == spare, a, b) for p, a, b in after])
    """))
    assert out.strip() == "True [(True, True, False), (True, True, False)] [(True, True, True), (True, True, True)]"


def test_what_is_alive_at_a_steps_start_is_left_out_of_later_collections():
    """release_freed_memory collects, then freezes what is alive: later full collections no longer walk it, an
    object it held is still freed by its reference count once dropped, and garbage made later is still collected
    (full collections come less often, not never)."""
    from tests.fresh_python import run_fresh
    out = run_fresh(textwrap.dedent("""
        import gc, weakref
        from pipelines.processes import release_freed_memory
        class Node:
            pass
        kept = [[i] for i in range(100_000)]
        plain = Node()
        gone = weakref.ref(plain)
        release_freed_memory()
        frozen = gc.get_freeze_count()
        del plain  # no cycle: its reference count frees it, frozen or not
        later = Node(); later.me = later  # a cycle made after the step began
        seen = weakref.ref(later)
        del later
        gc.collect()
        print(frozen >= 100_000, gone() is None, seen() is None, gc.get_threshold()[2])
    """))
    assert out.strip() == "True True True 100"  # full collections a tenth as often as Python's default


def test_a_lean_worker_leaves_its_inherited_imports_out_of_its_collections():
    """Each lean worker freezes what it starts with (the server's imports: numpy, pandas, OpenCV...), so its own
    collections walk only what its jobs make."""
    from pipelines.processes import ordered_map
    from tests.probe_worker import frozen
    assert all(n > 10_000 for n in ordered_map(frozen, [0, 1], 2))


@pytest.mark.timeout(120)
def test_main_runs_while_the_fork_server_is_still_loading_its_modules(tmp_path):
    """A fork server started with a run loads its modules for a second or two before it can fork a worker
    (scikit-learn for the export's checks); the main part of `run_beside` goes on meanwhile instead of waiting
    for its worker to start. Here the server loads a module that takes 2 s to import (found on PYTHONPATH: the
    server does not take this process's sys.path)."""
    from tests.fresh_python import run_fresh
    (tmp_path / "slow_to_load.py").write_text("import time\ntime.sleep(2.0)\n")
    out = run_fresh("import time\nfrom pipelines.processes import expect_worker_modules, run_beside\n"
                    "from tests.probe_worker import pid_after\n"
                    "expect_worker_modules('slow_to_load')\n"
                    "t0 = time.time()\n"
                    "main, (job,) = run_beside(time.time, [(pid_after, (0.0,))], workers=2)\n"
                    "print(round(main - t0, 2), round(job[1] - t0, 2))\n", path=(str(tmp_path),))
    main_started, job_started = (float(v) for v in out.split())
    assert job_started >= 2.0  # the worker came after the server's 2 s of loading
    assert main_started < 1.0  # main did not wait for it


@pytest.mark.timeout(120)
@pytest.mark.parametrize("imports, frozen", [("", False), ("import pipelines.processes\n", True)])
def test_a_process_that_spreads_work_leaves_what_it_holds_out_of_shutdowns_collections(imports, frozen):
    """A process that imported the libraries holds hundreds of thousands of objects, which CPython's shutdown
    collections would walk once more after its last line (the worker servers did so after the build returned).
    Once `pipelines.processes` is loaded, everything alive is frozen when the exit handlers run; the probe's
    handler, registered first, runs last and sees it (without the module, nothing is frozen)."""
    from tests.fresh_python import run_fresh
    out = run_fresh("import atexit, gc\n"
                    "atexit.register(lambda: print(gc.get_freeze_count(), len(gc.get_objects())))\n"
                    f"{imports}import pandas\nheld = [[i] for i in range(50_000)]\n")
    frozen_count, unfrozen = (int(v) for v in out.split())
    if frozen:
        assert frozen_count > 50_000 and unfrozen == 0
    else:
        assert frozen_count == 0 and unfrozen > 50_000
