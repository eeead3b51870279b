"""The engine thread's outbox: events held until the step's flush, then delivered in order."""

from __future__ import annotations

import asyncio
import threading

from cerebrum.backend.generation import Finished, Generation, TextPiece
from cerebrum.backend.worker import Outbox


async def test_events_wait_for_the_flush_and_arrive_in_order() -> None:
    loop = asyncio.get_running_loop()
    outbox = Outbox()
    a, b = Generation(), Generation()

    def step() -> None:  # on another thread, as the engine's
        outbox.put(loop, a, TextPiece("x"))
        outbox.put(loop, b, TextPiece("y"))
        outbox.put(loop, a, Finished("stop", 1, 1))

    thread = threading.Thread(target=step)
    thread.start()
    thread.join()
    await asyncio.sleep(0.01)
    assert a.events.empty() and b.events.empty()  # nothing crossed before the flush
    outbox.flush()
    assert await asyncio.wait_for(a.events.get(), 1) == TextPiece("x")
    assert await asyncio.wait_for(a.events.get(), 1) == Finished("stop", 1, 1)
    assert await asyncio.wait_for(b.events.get(), 1) == TextPiece("y")


def test_a_closed_loop_is_skipped() -> None:
    loop = asyncio.new_event_loop()
    loop.close()
    outbox = Outbox()
    outbox.put(loop, Generation(), TextPiece("x"))
    outbox.flush()  # no error: nobody is left to read it
