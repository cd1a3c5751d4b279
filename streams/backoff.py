"""Retry with exponential back-off, forever: an outage (Elasticsearch, Alertmanager) delays, it
never loses.

The sink must not give up: Faust acknowledges a batch once the agent moves on, even when the
agent raised, so an error that escapes the sink is a batch lost. Waiting keeps the offsets
uncommitted, Kafka keeps the events, and consumer lag (a metric) tells on-call something is wrong.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from streams import metrics

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class Backoff:
    initial: float = 0.5
    maximum: float = 30.0
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    def delay(self, attempt: int) -> float:
        return float(min(self.maximum, self.initial * 2**attempt))

    async def wait(self, attempt: int, what: str, problem: object) -> None:
        delay = self.delay(attempt)
        metrics.RETRIES.labels(what).inc()
        log.warning(
            "call failed, retrying",
            extra={"operation": what, "error": str(problem)[:500], "retry.in_s": delay},
            # The first failure with its traceback: an outage reads the same each time, a bug
            # must be findable.
            exc_info=problem if attempt == 0 and isinstance(problem, BaseException) else None,
        )
        await self.sleep(delay)

    async def call(self, what: str, operation: Callable[[], Awaitable[T]]) -> T:
        """``operation()``'s result, retried after any error until it succeeds."""
        attempt = 0
        while True:
            try:
                return await operation()
            except Exception as exc:
                await self.wait(attempt, what, exc)
                attempt += 1
