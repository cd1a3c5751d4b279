"""Running detectors over events with an explicit event-time clock, and folding their alerts.

The same ``Runner`` serves the offline ``detect`` command (states in a dict) and the streaming
worker (states in a Faust table, which is a mapping too): the detection path is one piece of
code. ``AlertBook`` folds single-evidence alerts into incidents (``alerts.merge``).
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable, Iterable, MutableMapping
from datetime import UTC, datetime, timedelta
from typing import Any

from detectors.alerts import Alert, merge
from detectors.base import Detector, DetectorState
from detectors.models import AccessEvent

log = logging.getLogger(__name__)

END_OF_TIME = datetime.max.replace(tzinfo=UTC)
SEPARATOR = "|"


def state_key(name: str, key: str) -> str:
    return f"{name}{SEPARATOR}{key}"


class Runner:
    """Detectors, their per-key states, and the event-time clock that wakes pending decisions."""

    def __init__(
        self,
        detectors: dict[str, Detector[Any]],
        states: MutableMapping[str, DetectorState] | None = None,
        on_error: Callable[[str, str, Exception], None] | None = None,
    ):
        self.detectors = detectors
        self.on_error = on_error or log_error
        self.states: MutableMapping[str, DetectorState] = {} if states is None else states
        self.clock: datetime | None = None
        self._wakeups: list[tuple[datetime, str]] = []
        self._scheduled: dict[str, datetime] = {}  # each key's earliest wakeup in the heap
        # A fresh state per detector, built once and copied per use (building costs more).
        self._fresh = {name: detector.initial() for name, detector in detectors.items()}
        for stored in list(self.states):  # a restarted worker: its pending decisions
            state = self.states.get(stored)  # None: unreadable, dropped by the mapping
            if state is not None:
                self._schedule(stored, self._due(stored.split(SEPARATOR, 1)[0], state))

    def routes(self, event: AccessEvent) -> list[tuple[str, str]]:
        """(detector name, key) for every detector that wants the event."""
        return routes(self.detectors, event, self.on_error)

    def feed(self, event: AccessEvent) -> list[Alert]:
        """All detectors on one event, then the clock moved to its time (offline path)."""
        alerts = []
        for name, key in self.routes(event):
            alerts += self.step(name, key, event)
        if self.clock is None or event.timestamp > self.clock:
            alerts += self.advance(event.timestamp)
        return alerts

    def step(self, name: str, key: str, event: AccessEvent) -> list[Alert]:
        """One detector on one event. A detector that raises loses that event and nothing else:
        it worked on a copy, so the stored state is exactly what it was before the call."""
        detector = self.detectors[name]
        if detector.stateless:
            return self._step_stateless(name, detector, event)
        stored = state_key(name, key)
        before = self.states.get(stored)
        working = (before if before is not None else self._fresh[name]).snapshot()
        try:
            state, alerts = detector.step(working, event)
        except Exception as exc:
            self.on_error(name, event.event_id, exc)
            return []
        self._save(stored, name, state)
        return alerts

    def _step_stateless(
        self, name: str, detector: Detector[Any], event: AccessEvent
    ) -> list[Alert]:
        """A detector that judges each event alone: no stored state to read, copy or write
        (on the worker each is a table look-up). Should it keep state after all, that is a bug
        reported as a failure on the event, not state silently lost at the next one."""
        fresh = self._fresh[name]  # lent, not copied: checked to be still fresh after the call
        try:
            state, alerts = detector.step(fresh, event)
            if not (state.is_idle() and fresh.is_idle()):
                raise TypeError(f"{name} is declared stateless but kept state")
        except Exception as exc:
            self._fresh[name] = detector.initial()  # whatever the call did to the lent one
            self.on_error(name, event.event_id, exc)
            return []
        return alerts

    def advance(self, now: datetime) -> list[Alert]:
        """Move the event-time clock forward; run the pending decisions it reaches."""
        if self.clock is not None and now <= self.clock:
            return []
        self.clock = now
        alerts: list[Alert] = []
        done: set[str] = set()
        while self._wakeups and self._wakeups[0][0] <= now:
            at, stored = heapq.heappop(self._wakeups)
            if self._scheduled.get(stored) == at:
                del self._scheduled[stored]
            state = self.states.get(stored)
            if state is None or stored in done:
                # Dropped meanwhile; or expired at this very time and still due, which only a
                # detector whose ``forget_at`` disagrees with its ``expire`` can cause: not
                # looped on for ever (its next event schedules it again).
                continue
            name = stored.split(SEPARATOR, 1)[0]
            due = self._due(name, state)
            if due is None or due > now:
                self._schedule(stored, due)  # moved later since it was scheduled
                continue
            done.add(stored)
            state, found = self._expire(name, state, now)
            alerts += found
            self._save(stored, name, state)
        return alerts

    def _expire(
        self, name: str, state: DetectorState, now: datetime
    ) -> tuple[DetectorState, list[Alert]]:
        """``expire`` on a copy; if it raises, the due decisions are taken one at a time, so
        the one that makes it raise is dropped alone (else it would raise at every tick)."""
        detector = self.detectors[name]
        try:
            return detector.expire(state.snapshot(), now)
        except Exception:
            log.warning("detector failed to expire a state: isolating the decision at fault")
        due = sorted((p for p in state.pending if p.due <= now), key=lambda p: p.due)
        kept = state.snapshot()
        kept.pending = [p for p in kept.pending if p.due > now]
        alerts: list[Alert] = []
        for pending in due:
            trial = kept.snapshot()
            trial.pending.append(pending)
            try:
                kept, found = detector.expire(trial, now)
            except Exception as exc:
                self.on_error(name, pending.event.event_id, exc)
                continue
            alerts += found
        return kept, alerts

    def waiting(self) -> int:
        """Decisions scheduled (an upper bound: a key rescheduled counts again until due)."""
        return len(self._wakeups)

    def finish(self) -> list[Alert]:
        """End of input: every pending decision is taken."""
        self.clock = None
        return self.advance(END_OF_TIME)

    def _save(self, stored: str, name: str, state: DetectorState) -> None:
        if state.is_idle():
            if stored in self.states:
                del self.states[stored]
            return
        self.states[stored] = state
        self._schedule(stored, self._due(name, state))

    def _due(self, name: str, state: DetectorState) -> datetime | None:
        """When the state next needs ``expire``: a pending decision, or what it remembers
        growing too old to matter, so that a key never seen again is dropped in the end
        instead of kept for ever (memory flat on any length of input)."""
        due, forget = state.next_due(), self.detectors[name].forget_at(state)
        if due is None or forget is None:
            return due or forget
        return min(due, forget)

    def _schedule(self, stored: str, due: datetime | None) -> None:
        """One wakeup per key in the heap, its earliest: a later one is found when it pops."""
        if due is None:
            return
        known = self._scheduled.get(stored)
        if known is not None and known <= due:
            return
        self._scheduled[stored] = due
        heapq.heappush(self._wakeups, (due, stored))


def routes(
    detectors: dict[str, Detector[Any]],
    event: AccessEvent,
    on_error: Callable[[str, str, Exception], None],
) -> list[tuple[str, str]]:
    """(detector name, key) for every detector that wants the event: the one routing, for the
    offline runner and the worker alike. A detector whose ``key`` raises misses that event."""
    found = []
    for name, detector in detectors.items():
        try:
            key = detector.key(event)
        except Exception as exc:
            on_error(name, event.event_id, exc)
            continue
        if key is not None:
            found.append((name, key))
    return found


def log_error(name: str, event_id: str, exc: Exception) -> None:
    """What a detector failure leaves behind by default: a log line with the event id."""
    log.error(
        "detector failed on an event; its state is left as it was",
        exc_info=exc,
        extra={"detector": name, "event.id": event_id},
    )


class AlertBook:
    """Incidents by alert id: each new single-evidence alert merged into its incident.

    ``known`` looks up an incident merged earlier and kept elsewhere (the worker's incidents
    table); offline, everything is in the book. One merging for the worker and ``detect``.
    """

    def __init__(self, known: Callable[[str], Alert | None] | None = None) -> None:
        self.alerts: dict[str, Alert] = {}
        self.known = known or (lambda alert_id: None)
        self.new: set[str] = set()  # incidents this book opened (not known before)

    def add(self, alerts: Iterable[Alert]) -> list[Alert]:
        """Merge; return the incidents that changed (each once)."""
        changed: dict[str, Alert] = {}
        for alert in alerts:
            current = self.alerts.get(alert.alert_id)
            if current is None:
                current = self.known(alert.alert_id)
                if current is None:
                    self.new.add(alert.alert_id)
            merged = alert if current is None else merge(current, alert)
            if merged is not current:
                self.alerts[alert.alert_id] = merged
                changed[alert.alert_id] = merged
        return list(changed.values())


def detect(events: Iterable[AccessEvent], detectors: dict[str, Detector[Any]]) -> list[Alert]:
    """Offline: events in event-time order (stable), every detector, every decision taken."""
    return detect_stream(sorted(events, key=lambda e: e.timestamp), detectors, timedelta(0))


def detect_stream(
    events: Iterable[AccessEvent], detectors: dict[str, Detector[Any]], reorder: timedelta
) -> list[Alert]:
    """Offline over a stream that is in event-time order up to ``reorder``: events are held in
    a heap until the newest one seen is ``reorder`` ahead of them, so memory is bounded by that
    window (and the detectors' states), not by the input. An event later than the window is
    still fed, as the worker would: judged with what is left of its key's state."""
    runner, book = Runner(detectors), AlertBook()
    # Keyed by POSIX seconds: comparing floats, not aware datetimes, keeps the heap cheap.
    held: list[tuple[float, int, AccessEvent]] = []
    window = reorder.total_seconds()
    newest = float("-inf")
    for number, event in enumerate(events):
        at = event.timestamp.timestamp()
        heapq.heappush(held, (at, number, event))
        newest = max(newest, at)
        while held and held[0][0] <= newest - window:
            book.add(runner.feed(heapq.heappop(held)[2]))
    while held:
        book.add(runner.feed(heapq.heappop(held)[2]))
    book.add(runner.finish())
    return sorted(book.alerts.values(), key=lambda a: (a.timestamp, a.alert_id))
