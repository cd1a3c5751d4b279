"""The detect agent's batch: retried whole from the stored states when anything fails, and never
stopped by a state it cannot read (an exception escaping the agent loses the batch)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from faust.types import TP

from detectors.alerts import Alert
from detectors.models import AccessEvent
from detectors.policy import load_policy
from detectors.registry import all_detectors
from detectors.runner import Runner, log_error
from streams import metrics
from streams.demo.simulate import DEMO_POLICY, simulate
from streams.detection import routing
from streams.detection.stage import DetectStage
from streams.detection.states import TableStates
from streams.settings import Settings

PARTITIONS = 1
# Past every deadline of the simulated day (2026-11-16), and not in the future: the clock does
# not believe claims ahead of the wall clock (plus the events' allowed skew).
LATER = datetime.now(UTC)
GENERATION = 1


class _PartsTopic:
    """Delivers alert parts, after failing the first ``failures`` sends."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.sent: list[bytes] = []

    async def send(self, key: Any, value: bytes, partition: int | None) -> Any:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("broker gone for a moment")
        self.sent.append(value)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def _messages() -> list[Any]:
    events = [
        AccessEvent.model_validate_json(json.dumps(e))
        for e in simulate(practices=2, days=1, seed=5).events
    ]
    detectors = all_detectors(load_policy(DEMO_POLICY))
    routed = {name: d for name, d in detectors.items() if not d.stateless}  # as the ingest does
    out = routing.forward(events, routed, PARTITIONS, {0: LATER}, log_error, GENERATION)
    return [
        SimpleNamespace(value=raw, partition=0, offset=n, topic="detect")
        for n, raw in enumerate(out[0])
    ]


def _stage(table: dict[str, Any], topic: _PartsTopic) -> DetectStage:
    consumer = SimpleNamespace(assignment=lambda: {TP("t-detect", 0)})
    app = SimpleNamespace(consumer=consumer, consumer_generation_id=GENERATION)
    return DetectStage(
        app,  # type: ignore[arg-type]
        Settings(app_id="t", topic_partitions=PARTITIONS),
        all_detectors(load_policy(DEMO_POLICY)),
        table,
        topic,
        source_partitions=1,
        rebalanced={"detect": True},
        writable=_nothing,
    )


async def _nothing() -> None:
    return None


def _alerts(topic: _PartsTopic) -> set[tuple[str, tuple[str, ...]]]:
    alerts = [a for raw in topic.sent for a in routing.decode_alert_parts(raw)]
    return {(a.alert_id, tuple(a.event_ids)) for a in alerts}


def test_a_failed_batch_is_retried_from_the_stored_states_and_counts_once() -> None:
    messages = _messages()
    clean_table: dict[str, Any] = {}
    clean = _PartsTopic(failures=0)
    asyncio.run(_stage(clean_table, clean).handle(messages))
    assert _alerts(clean)  # the day has incidents

    table: dict[str, Any] = {}
    flaky = _PartsTopic(failures=1)
    stage = _stage(table, flaky)

    async def twice() -> None:
        try:
            await stage.handle(messages)
            raise AssertionError("the first attempt should have failed")
        except ConnectionError:
            pass
        assert table == {}  # nothing of the failed attempt was stored
        await stage.handle(messages)

    asyncio.run(twice())
    assert table == clean_table
    assert _alerts(flaky) == _alerts(clean)


def test_an_unreadable_stored_state_starts_afresh_and_the_batch_goes_on() -> None:
    messages = _messages()
    table: dict[str, Any] = {}
    asyncio.run(_stage(table, _PartsTopic(failures=0)).handle(messages[:1]))
    damaged = next(iter(table))
    table[damaged] = {"pending": "not a list", "unexpected": 1}
    unreadable = metrics.INTERNAL_UNDECODABLE.labels("detector-states table")
    before = unreadable._value.get()
    detectors = all_detectors(load_policy(DEMO_POLICY))
    states = TableStates(table, detectors)
    assert states.get(damaged) is None  # unreadable: as if absent
    Runner(detectors, states)  # a rebuilt runner schedules the others and skips it
    asyncio.run(_stage(table, _PartsTopic(failures=0)).handle(messages))  # does not raise
    assert unreadable._value.get() > before  # counted (and logged with its key)


def test_alert_parts_are_valid_alerts() -> None:
    topic = _PartsTopic(failures=0)
    asyncio.run(_stage({}, topic).handle(_messages()))
    for raw in topic.sent:
        assert all(isinstance(a, Alert) for a in routing.decode_alert_parts(raw))


def test_hostile_internal_messages_are_skipped_and_counted_beside_valid_ones() -> None:
    """Only our workers write the detect topic, but a stranger or a bug could: deep nesting,
    a huge number, wrong types, an oversized blob. Each is skipped (counted, logged), the batch
    is not stopped, and the valid messages around it detect. An absurdly early tick is read
    (it can only hold the clock back: claims never move a partition backwards); one far in
    the future is not believed (counted): it would decide every pending case at once."""
    valid = _messages()
    hostile = [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"events": [], "routes": [], "tick": {"0": "2026-01-01T00:00:00Z"}, "gen": 1'
        + b"0" * 5000
        + b"}",
        b'{"events": "not a list", "routes": 7, "tick": []}',
        b'{"events": [{"event_id": 1}], "routes": [[0, "x", "y"]], "tick": {}}',
        b"x" * (2 * 1024 * 1024),
    ]
    strangers = [
        SimpleNamespace(value=raw, partition=0, offset=-1, topic="detect") for raw in hostile
    ]
    undecodable = metrics.INTERNAL_UNDECODABLE.labels("detect")
    before = undecodable._value.get()
    clean, mixed = _PartsTopic(failures=0), _PartsTopic(failures=0)
    asyncio.run(_stage({}, clean).handle(valid))
    early = SimpleNamespace(
        value=b'{"events": [], "routes": [], "tick": {"0": "0001-01-01T00:00:00+14:00"}, "gen": 1}',
        partition=0,
        offset=-1,
        topic="detect",
    )
    far = SimpleNamespace(
        value=b'{"events": [], "routes": [], "tick": {"0": "9999-01-01T00:00:00Z"}, "gen": 1}',
        partition=0,
        offset=-1,
        topic="detect",
    )
    asyncio.run(_stage({}, mixed).handle([*strangers[:3], early, far, *valid, *strangers[3:]]))
    assert undecodable._value.get() - before == len(hostile) + 1  # + the far claim
    assert _alerts(clean)
    assert _alerts(mixed) == _alerts(clean)
