"""Thread priorities: a real-time event loop whose threads start ordinary; model threads at 0."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from cerebrum.backend.priority import make_this_thread_realtime, run_model_thread_at

pytestmark = pytest.mark.skipif(not hasattr(os, "SCHED_RESET_ON_FORK"), reason="Linux only")


def _policy_of_this_thread() -> tuple[int, int]:
    tid = threading.get_native_id()
    return os.sched_getscheduler(tid), os.getpriority(os.PRIO_PROCESS, tid)


def test_the_loop_thread_turns_realtime_and_the_threads_it_starts_do_not() -> None:
    seen: dict[str, tuple[int, int]] = {}

    def loop_thread() -> None:
        if not make_this_thread_realtime():
            return
        seen["loop"] = _policy_of_this_thread()
        child = threading.Thread(target=lambda: seen.setdefault("child", _policy_of_this_thread()))
        child.start()
        child.join()

    thread = threading.Thread(target=loop_thread)
    thread.start()
    thread.join()
    if not seen:
        pytest.skip("real-time scheduling refused here (no CAP_SYS_NICE, RLIMIT_RTPRIO 0)")
    # Reset on fork flag included in the reading of the loop thread's policy.
    assert seen["loop"][0] & ~os.SCHED_RESET_ON_FORK == os.SCHED_RR
    assert seen["child"] == (os.SCHED_OTHER, 0)
    # The calling thread (this test's) was left alone.
    assert os.sched_getscheduler(threading.get_native_id()) == os.SCHED_OTHER


def test_refused_realtime_leaves_the_thread_as_it_was() -> None:
    # An unprivileged user with RLIMIT_RTPRIO 0 is refused: the call says so
    # and the thread keeps running at its ordinary policy. (Imports first: the
    # unprivileged user may not be able to read the interpreter's files.)
    out = _as_nobody("from cerebrum.backend.priority import make_this_thread_realtime\n"
                     "resource.setrlimit(resource.RLIMIT_RTPRIO, (0, 0))\n",
                     "print(make_this_thread_realtime(), os.sched_getscheduler(0))\n")
    assert out.stdout.split() == ["False", str(os.SCHED_OTHER)]


def _as_nobody(setup: str, code: str) -> subprocess.CompletedProcess[str]:
    """Run ``setup`` as root, then ``code`` as the unprivileged user ``nobody`` (no
    CAP_SYS_NICE), in a fresh interpreter; skips the test when not root."""
    if os.geteuid() != 0:
        pytest.skip("needs root to become an unprivileged user for the test")
    script = ("import logging, os, resource, threading\n" + setup
              + "os.setuid(65534)  # drops CAP_SYS_NICE\n" + code)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True, cwd=os.getcwd(),
                          env={**os.environ, "PYTHONPATH": os.getcwd()})


def _model_thread_nice(start: int, nice: int) -> int | None:
    """The nice value a thread started at ``start`` ends at; None where ``start``
    itself is not allowed here."""
    seen: list[int | None] = []

    def body() -> None:
        tid = threading.get_native_id()
        try:
            os.setpriority(os.PRIO_PROCESS, tid, start)
        except PermissionError:
            seen.append(None)
            return
        run_model_thread_at(nice)
        seen.append(os.getpriority(os.PRIO_PROCESS, tid))

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    return seen[0]


def test_the_model_thread_steps_down_to_normal_priority() -> None:
    # The unit starts the service at Nice=-5 (its loop stays prompt); the
    # model's thread must come back to 0, and leave a normal or lower
    # priority as it is.
    raised = _model_thread_nice(-5, 0)
    if raised is None:
        pytest.skip("raising a thread's priority needs CAP_SYS_NICE")
    assert raised == 0
    assert _model_thread_nice(3, 0) == 3


def test_a_negative_model_nice_gives_the_model_the_upper_hand() -> None:
    # CEREBRUM_MODEL_NICE=-5: from 0 (where a real-time loop's threads start)
    # and from a nicer start alike.
    if _model_thread_nice(0, -5) is None or os.geteuid() != 0:
        pytest.skip("lowering a nice value needs CAP_SYS_NICE or RLIMIT_NICE")
    assert _model_thread_nice(0, -5) == -5
    assert _model_thread_nice(3, -5) == -5
    assert _model_thread_nice(0, 4) == 4


def test_a_refused_model_nice_is_one_warning() -> None:
    done = _as_nobody("from cerebrum.backend.priority import run_model_thread_at\n"
                      "logging.basicConfig(level='WARNING')\n"
                      "resource.setrlimit(resource.RLIMIT_NICE, (0, 0))\n",
                      "run_model_thread_at(-5)\n"
                      "print(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))\n")
    assert done.stdout.split() == ["0"]
    assert "nice -5 was refused" in done.stderr and "LimitNICE=-5" in done.stderr
    assert "Traceback" not in done.stderr
