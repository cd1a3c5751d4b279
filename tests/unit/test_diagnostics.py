"""``kill -USR2`` on a worker logs where each of its tasks waits (streams.diagnostics)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
from types import SimpleNamespace

import pytest

from streams import diagnostics


async def _waits_for_a_commit(never: asyncio.Event) -> None:
    await never.wait()


async def _consumer_side() -> None:
    await asyncio.sleep(3600)


def test_sigusr2_logs_the_stack_of_each_task_of_both_loops(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A stand-in for Faust's consumer thread: a loop of its own, on a thread of its own.
    other = asyncio.new_event_loop()
    thread = threading.Thread(target=other.run_forever, daemon=True)
    thread.start()
    consumer_side = asyncio.run_coroutine_threadsafe(_consumer_side(), other)

    async def scenario() -> None:
        stuck = asyncio.create_task(_waits_for_a_commit(asyncio.Event()), name="stuck-commit")
        app = SimpleNamespace(_consumer=SimpleNamespace(_thread=SimpleNamespace(thread_loop=other)))
        diagnostics.install(app)
        try:
            os.kill(os.getpid(), signal.SIGUSR2)
            # The handler runs on this loop, then on the thread: until both have logged (a
            # loaded machine may take a while), at most 10 s.
            for _ in range(200):
                await asyncio.sleep(0.05)
                if any(getattr(r, "loop", None) == "consumer thread" for r in caplog.records):
                    break
        finally:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGUSR2)
            stuck.cancel()

    try:
        with caplog.at_level(logging.WARNING, logger="streams.diagnostics"):
            asyncio.run(scenario())
    finally:
        consumer_side.cancel()
        other.call_soon_threadsafe(other.stop)
        thread.join(5)
        other.close()
    stacks = [r.__dict__ for r in caplog.records if r.getMessage() == "task stack"]
    names = ("_waits_for_a_commit", "_consumer_side")
    by_loop = {(s["loop"], n) for s in stacks for n in names if n in s["stack"]}
    assert by_loop == {("worker", "_waits_for_a_commit"), ("consumer thread", "_consumer_side")}
