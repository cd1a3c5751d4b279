"""The baselines of ``worker_bench``: plain Faust agents on the same source topic as the worker.

- ``plain``: iterates the topic and counts; the ceiling of Faust's per-message machinery.
- ``naive``: parses each event and writes a table entry per event (keyed by actor), what
  architecture.md warns against: one changelog message per event.

Run by the bench as ``python -m bench.baseline_agent worker`` with ``BENCH_MODE`` set.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import faust

MODE = os.environ["BENCH_MODE"]
PROGRESS = Path(os.environ["BENCH_PROGRESS"])
PARTITIONS = int(os.environ["BENCH_PARTITIONS"])
EVERY = 500

app = faust.App(
    os.environ["BENCH_APP_ID"],
    broker=f"kafka://{os.environ['BENCH_KAFKA']}",
    datadir=os.environ["BENCH_DATADIR"],
    web_enabled=False,
    topic_partitions=PARTITIONS,
    consumer_auto_offset_reset="earliest",
)
source = app.topic(os.environ["BENCH_TOPIC"], key_serializer="raw", value_serializer="raw")
states = app.Table(
    "naive-states",
    default=None,
    partitions=PARTITIONS,
    schema=faust.Schema(key_serializer="json", value_serializer="json"),
)
seen = {"events": 0}


def _count() -> None:
    seen["events"] += 1
    if seen["events"] % EVERY == 0:  # (Faust captures stdout: progress goes to a file)
        with PROGRESS.open("a") as progress:
            progress.write(json.dumps({"t": time.time(), "events": seen["events"]}) + "\n")


@app.agent(source)
async def baseline(stream: Any) -> AsyncIterator[None]:
    async for event in stream.events():
        if MODE == "naive":
            data = json.loads(event.message.value)
            key = f"actor:{data['actor']['id']}"
            previous = states.get(key) or {"count": 0}
            states[key] = {"count": previous["count"] + 1, "last": data}
        _count()
        yield None


if __name__ == "__main__":
    from streams.cli.worker import collect_less_often

    collect_less_often()  # the worker's garbage-collector setting: the same footing
    app.main()
