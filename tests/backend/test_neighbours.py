"""The idle watch reads real CPU use of other processes during a pause."""

from __future__ import annotations

import subprocess
import sys
import time

from cerebrum.backend.neighbours import IdleWatch, host_cores, runnable_neighbours


def test_a_busy_process_during_the_pause_shows_as_a_busy_core() -> None:
    watch = IdleWatch()
    assert watch.busy_cores() is None  # no pause started yet
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # the interpreter has started and spins
        watch.start()
        time.sleep(1.0)
        busy = watch.busy_cores()
    finally:
        spinner.kill()
        spinner.wait()
    assert busy is not None
    # One spinning process is one core (less if the host is short of cores).
    assert 0.6 <= busy <= host_cores() + 0.1


def test_our_own_cpu_use_does_not_count(monkeypatch) -> None:
    # A host where only this process runs (the real host may be shared).
    import psutil

    from cerebrum.backend import neighbours

    me = psutil.Process()
    monkeypatch.setattr(neighbours, "_host_busy_seconds",
                        lambda: me.cpu_times().user + me.cpu_times().system)
    watch = IdleWatch()
    watch.start()
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:
        pass  # this process spins: that is not a neighbour
    busy = watch.busy_cores()
    assert busy is not None and busy < 0.1


def test_a_neighbour_that_stopped_before_the_pause_ended_does_not_count() -> None:
    # It kept a core busy through most of the pause, then finished (as a server
    # answering the request before ours does): the next request meets none.
    watch = IdleWatch()
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        watch.start()
        time.sleep(1.0)
    finally:
        spinner.kill()
        spinner.wait()
    busy = watch.busy_cores()
    background = runnable_neighbours()  # the shared host's other work, if any
    assert busy is not None and background is not None
    assert busy < background + 0.5


def test_runnable_neighbours_counts_spinners_and_not_our_own_threads() -> None:
    import threading

    from cerebrum.backend import neighbours

    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            pass

    mine = threading.Thread(target=spin)
    mine.start()
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        time.sleep(0.3)
        others = runnable_neighbours()
        ours = neighbours._runnable_here()
    finally:
        stop.set()
        mine.join()
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
    assert others is not None and others >= 2  # runnable in every snapshot
    assert ours >= 2  # this thread and the spinning one: subtracted from the host's count
