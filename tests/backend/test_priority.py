"""Thread priorities: a real-time event loop whose threads start ordinary; model threads at 0."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from cerebrum.backend.priority import make_this_thread_realtime, run_at_normal_priority

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
    if os.geteuid() != 0:
        pytest.skip("needs root to become an unprivileged user for the test")
    code = (
        "import os, resource\n"
        "from cerebrum.backend.priority import make_this_thread_realtime\n"
        "resource.setrlimit(resource.RLIMIT_RTPRIO, (0, 0))\n"
        "os.setuid(65534)  # drops CAP_SYS_NICE\n"
        "print(make_this_thread_realtime(), os.sched_getscheduler(0))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=os.getcwd(),
                         env={**os.environ, "PYTHONPATH": os.getcwd()}).stdout.split()
    assert out == ["False", str(os.SCHED_OTHER)]


def test_the_model_thread_steps_down_to_normal_priority() -> None:
    # The unit starts the service at Nice=-5 (its loop stays prompt); the
    # model's thread must come back to 0, and leave a normal or lower
    # priority as it is.
    seen: dict[str, int] = {}

    def body(start: int, name: str) -> None:
        tid = threading.get_native_id()
        try:
            os.setpriority(os.PRIO_PROCESS, tid, start)
        except PermissionError:
            seen[name] = -100
            return
        run_at_normal_priority()
        seen[name] = os.getpriority(os.PRIO_PROCESS, tid)

    for start, name in ((-5, "raised"), (3, "lowered")):
        thread = threading.Thread(target=body, args=(start, name))
        thread.start()
        thread.join()
    if seen["raised"] == -100:
        pytest.skip("raising a thread's priority needs CAP_SYS_NICE")
    assert seen == {"raised": 0, "lowered": 3}
