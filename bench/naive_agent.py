"""The baseline of ``detection_bench``: a Faust agent that updates a table on every event.

What architecture.md warns against (one changelog message per event), on the same messages and
broker as the real detect agent. Run by the bench as ``python -m bench.naive_agent worker``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import faust

log = logging.getLogger("bench.naive")
APP_ID = os.environ["BENCH_NAIVE_APP_ID"]
TOPIC = os.environ["BENCH_TOPIC"]
PARTITIONS = int(os.environ["BENCH_PARTITIONS"])
PROGRESS = Path(os.environ["BENCH_PROGRESS"])

app = faust.App(
    APP_ID,
    broker=f"kafka://{os.environ['BENCH_KAFKA']}",
    datadir=os.environ["BENCH_DATADIR"],
    web_enabled=False,
    topic_partitions=PARTITIONS,
    consumer_auto_offset_reset="earliest",
)
source = app.topic(TOPIC, key_serializer="raw", value_serializer="raw")
states = app.Table(
    "naive-states",
    default=None,
    partitions=PARTITIONS,
    schema=faust.Schema(key_serializer="json", value_serializer="json"),
)
seen = {"events": 0}


@app.agent(source)
async def naive(stream: Any) -> AsyncIterator[None]:
    async for event in stream.events():
        data = json.loads(event.message.value)
        if "tick" in data:
            continue
        key = f"{data['detector']}|{data['key']}"
        previous = states.get(key) or {"count": 0}
        states[key] = {"count": previous["count"] + 1, "last": data["event"]}
        seen["events"] += 1
        if seen["events"] % 500 == 0:  # (Faust captures stdout: progress goes to a file)
            with PROGRESS.open("a") as progress:
                progress.write(json.dumps({"t": time.time(), "events": seen["events"]}) + "\n")
        yield None


if __name__ == "__main__":
    app.main()
