"""Thread priorities: a prompt event loop beside model threads that compete as equals.

On a 2-core VPS, llama.cpp's two threads hold both cores while a batch
decodes. Whatever else must run then (the event loop answering ``/health``
and forwarding tokens) waits for the kernel to preempt one of them, and in a
small guest that wait is long: a thread waking beside two busy threads was
measured to oversleep by 8–15 ms at the 99th percentile, at nice −5 as at 0.
A real-time thread does not wait: the kernel preempts an ordinary one at
once (oversleep p99 0.13 ms in the same test). So the event loop's thread
asks for the lowest real-time priority, ``SCHED_RR`` 1; it does little work
per request, and the kernel's real-time throttling caps it at 95% of a core
even if it should spin. ``SCHED_RESET_ON_FORK`` keeps that to the one thread:
every thread it starts later (the model's worker and llama.cpp's compute
threads, executors) begins as an ordinary thread at nice 0 or above.

Where real-time scheduling is not permitted (no ``CAP_SYS_NICE``, and an
``RLIMIT_RTPRIO`` of 0: the systemd unit grants ``LimitRTPRIO=1``), the loop
stays at the priority the service was started with (the unit's ``Nice=-5``),
and the model's thread steps back to nice 0 itself (``CEREBRUM_MODEL_NICE``).
"""

from __future__ import annotations

import logging
import os
import threading

_LOGGER = logging.getLogger(__name__)

LOOP_PRIORITY = 1
"""The lowest real-time priority: above every ordinary thread, below every real-time one."""


def make_this_thread_realtime(priority: int = LOOP_PRIORITY) -> bool:
    """Put the calling thread in ``SCHED_RR`` at ``priority``, reset for the threads it starts.

    Returns False (and leaves the thread as it was) where the system refuses.
    Call it on the event loop's thread before the service starts other threads:
    a thread started earlier keeps its own priority.
    """
    policy = getattr(os, "SCHED_RR", None)
    reset = getattr(os, "SCHED_RESET_ON_FORK", None)
    if policy is None or reset is None:  # not Linux
        return False
    try:
        # pid 0 on Linux: the calling thread, not the whole process.
        os.sched_setscheduler(0, policy | reset, os.sched_param(priority))
    except OSError as exc:
        _LOGGER.info("event loop at normal scheduling: real-time priority refused (%s); "
                     "grant LimitRTPRIO=1 (the systemd unit does) to keep /health prompt "
                     "while the model computes", exc.strerror)
        return False
    _LOGGER.info("event loop thread at real-time priority (SCHED_RR %d, reset on fork)", priority)
    return True


def run_model_thread_at(nice: int = 0) -> None:
    """Put this thread (and the llama.cpp threads it will start) at ``nice``, or
    where it is if that is nicer and ``nice`` is not negative.

    The model competes as an equal with other processes by default (0): neither
    above them (it would starve the host) nor below (a busy neighbour would
    starve it). Without real-time scheduling for the loop the service may run
    above normal priority (``Nice=-5`` in the systemd unit) so that its event
    loop stays as prompt as nice can make it, and this thread steps back.
    Threads inherit their creator's nice value, so setting it on the worker
    thread covers llama.cpp's compute threads too. Raising one's own nice value
    needs no privilege; lowering it below where it is needs ``RLIMIT_NICE``
    (systemd's ``LimitNICE=``) or ``CAP_SYS_NICE``.
    """
    tid = threading.get_native_id()
    try:
        current = os.getpriority(os.PRIO_PROCESS, tid)
        # A service started nicer than that (``nice -n 10``) was meant to be: it
        # stays so unless a negative value asks for the upper hand outright.
        target = nice if nice < 0 else max(nice, current)
        if current != target:
            os.setpriority(os.PRIO_PROCESS, tid, target)
    except OSError as exc:
        where = os.getpriority(os.PRIO_PROCESS, tid)
        _LOGGER.warning("the model's threads stay at nice %d: nice %d was refused (%s); "
                        "grant LimitNICE=%d or set CEREBRUM_MODEL_NICE=%d",
                        where, nice, exc.strerror, nice, where)
