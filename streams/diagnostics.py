"""What is a worker waiting on? ``kill -USR2 <pid>`` logs the stack of every asyncio task.

A worker that is alive but makes no progress (a rebalance that never ends, a commit that never
returns) says nothing by itself; its tasks' stacks say where it waits. Faust runs the Kafka
consumer on a thread of its own with its own event loop: its tasks are dumped too, from that
thread (walking a running loop's coroutines from another thread races with it).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from typing import Any

from mode.utils.tracebacks import format_task_stack

log = logging.getLogger(__name__)


def install(app: Any) -> None:
    """Register the SIGUSR2 handler on the running loop (call from a task of the worker)."""
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR2, dump_tasks, app)


def dump_tasks(app: Any) -> None:
    """One log line per task, with its stack, for the worker's loop and the consumer's."""
    _dump_loop("worker", asyncio.get_running_loop())
    _dump_producer(app)
    thread = getattr(getattr(app, "_consumer", None), "_thread", None)
    thread_loop = getattr(thread, "thread_loop", None)
    if thread_loop is not None:
        thread_loop.call_soon_threadsafe(_dump_loop, "consumer thread", thread_loop)


def _dump_loop(name: str, loop: asyncio.AbstractEventLoop) -> None:
    for task in asyncio.all_tasks(loop):
        # The whole chain of awaits (mode's walker): ``Task.print_stack`` shows only the
        # outermost frame of a suspended task, not what it waits on.
        try:
            stack = format_task_stack(task, limit=40)
        except Exception as exc:  # a diagnostic must never take the worker down
            stack = f"(stack unavailable: {exc!r})"
        log.warning("task stack", extra={"loop": name, "task": task.get_name(), "stack": stack})


def _dump_producer(app: Any) -> None:
    """Where the producer's batches stand: a batch never delivered stalls every flush (and a
    commit waits for a flush)."""
    try:
        producer = app.producer._producer
        sender = producer._sender
        accumulator = producer._message_accumulator
        cluster = producer.client.cluster
        queued = {
            f"{tp.topic}[{tp.partition}]": {
                "batches": len(batches),
                "leader": cluster.leader_for_partition(tp),
                "oldest_s": round(time.monotonic() - batches[0]._ctime, 1) if batches else None,
            }
            for tp, batches in accumulator._batches.items()
        }
        state = {
            "in_flight_nodes": sorted(sender._in_flight),
            "muted": sorted(f"{tp.topic}[{tp.partition}]" for tp in sender._muted_partitions),
            "queued": queued,
            "pending": sorted(
                f"{b.tp.topic}[{b.tp.partition}]" for b in accumulator._pending_batches
            ),
            "sender_done": sender.sender_task.done() if sender.sender_task else None,
        }
    except Exception as exc:  # private attributes of aiokafka: may move between versions
        state = {"unavailable": repr(exc)}
    log.warning("producer state", extra={"producer": state})
