"""What the access history costs per event, next to decoding it (the baseline, same run).

    python -m bench.history_bench [--events N] [--repeat R]

Prints events/s for each stage and its ratio to decoding alone. Absolute figures drift on a
shared machine; the ratios are what to compare between commits.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime

from detectors.models import AccessEvent
from streams.decode import decode
from streams.demo.simulate import simulate
from streams.history.chain import START, Position, link
from streams.history.document import history_document
from streams.keys import Key
from streams.pseudonym import Pseudonymizer, pseudonymise

PSEUDONYMIZER = Pseudonymizer(Key("bench", b"bench-key-0123456789abcdef0123456789"))
CHAIN_KEY = Key("c-bench", b"bench-chain-key-0123456789abcdef0123")
NOW = datetime(2026, 11, 23, tzinfo=UTC)


def _payloads(count: int) -> list[bytes]:
    events = simulate(practices=max(1, count // 130 + 1), days=1, seed=1).events[:count]
    return [json.dumps(event).encode() for event in events]


def _decode(payloads: list[bytes]) -> None:
    for payload in payloads:
        decode(payload)


def _document(payloads: list[bytes]) -> None:
    for payload in payloads:
        event = decode(payload)
        assert isinstance(event, AccessEvent)
        history_document(pseudonymise(event, PSEUDONYMIZER), NOW)


def _chained(payloads: list[bytes]) -> None:
    head = START
    for offset, payload in enumerate(payloads):
        event = decode(payload)
        assert isinstance(event, AccessEvent)
        document = history_document(pseudonymise(event, PSEUDONYMIZER), NOW)
        _, head = link(document, Position("bench", 0, offset), head, CHAIN_KEY)


def _best(stage: Callable[[list[bytes]], None], payloads: list[bytes], repeat: int) -> float:
    """Best of ``repeat`` runs: the least disturbed by other work on the machine."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        stage(payloads)
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    payloads = _payloads(args.events)
    stages = {
        "decode + validate (baseline)": _decode,
        "+ history document (pseudonymise, ECS)": _document,
        "+ hash chain": _chained,
    }
    baseline = None
    print(f"{len(payloads)} events, best of {args.repeat} runs")
    print(f"{'stage':<42} {'events/s':>10} {'cost vs baseline':>17}")
    for name, stage in stages.items():
        seconds = _best(stage, payloads, args.repeat)
        baseline = baseline or seconds
        print(f"{name:<42} {len(payloads) / seconds:>10,.0f} {seconds / baseline:>16.2f}x")


if __name__ == "__main__":
    main()
