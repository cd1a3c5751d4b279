"""Detector states in a Faust table, read through a cache and written once per batch.

A table write is a changelog message: one per event would make state, not detection, the cost
of the worker (architecture.md measured ~4k events/s that way). The cache keeps the states the
current batch touches and ``flush`` writes each changed one once, before the batch is
acknowledged; a crash in between replays the batch onto the previous states.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, MutableMapping
from typing import Any

from detectors.base import Detector, DetectorState
from detectors.runner import SEPARATOR
from streams import metrics

log = logging.getLogger(__name__)

_DELETED = object()


class TableStates(MutableMapping[str, DetectorState]):
    def __init__(self, table: MutableMapping[str, Any], detectors: dict[str, Detector[Any]]):
        self.table = table
        self.detectors = detectors
        self._cache: dict[str, DetectorState] = {}
        self._dirty: dict[str, object] = {}

    def _load(self, stored: str, raw: Any) -> DetectorState | None:
        """The stored state, or None if it cannot be read (written by an incompatible version,
        or damaged): that key starts afresh, logged and counted, and the worker goes on."""
        detector = self.detectors[stored.split(SEPARATOR, 1)[0]]
        try:
            # JSON mode: the models are strict, and the table holds JSON.
            state: DetectorState = type(detector.initial()).model_validate_json(json.dumps(raw))
        except ValueError as exc:
            metrics.INTERNAL_UNDECODABLE.labels("detector-states table").inc()
            log.error(
                "stored detector state unreadable; the key starts afresh",
                extra={"state.key": stored, "error": str(exc)[:200]},
            )
            return None
        return state

    def __getitem__(self, stored: str) -> DetectorState:
        if stored in self._dirty and self._dirty[stored] is _DELETED:
            raise KeyError(stored)
        if stored not in self._cache:
            raw = self.table.get(stored)
            state = None if raw is None else self._load(stored, raw)
            if state is None:
                raise KeyError(stored)
            self._cache[stored] = state
        return self._cache[stored]

    def __setitem__(self, stored: str, state: DetectorState) -> None:
        self._cache[stored] = state
        self._dirty[stored] = state

    def __delitem__(self, stored: str) -> None:
        self._cache.pop(stored, None)
        self._dirty[stored] = _DELETED

    def __iter__(self) -> Iterator[str]:
        keys = {k for k in self.table if k.split(SEPARATOR, 1)[0] in self.detectors}
        keys |= {k for k, v in self._dirty.items() if v is not _DELETED}
        return iter(sorted(k for k in keys if self._dirty.get(k) is not _DELETED))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def flush(self) -> int:
        """Write every changed state to the table once; return how many were written."""
        written = len(self._dirty)
        for stored, value in self._dirty.items():
            if value is _DELETED:
                if stored in self.table:
                    del self.table[stored]
            else:
                assert isinstance(value, DetectorState)
                self.table[stored] = value.model_dump(mode="json")
        self._dirty.clear()
        self._cache.clear()
        return written
