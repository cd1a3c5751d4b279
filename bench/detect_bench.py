"""Offline ``guetteur detect`` next to a bare ``json.loads`` pass over the same file, and its
peak memory on a short and a ten-times longer file (same practices, more days).

    python -m bench.detect_bench [--practices N] [--days D]

Each measure runs in a fresh process, so its peak RSS is its own. Prints the ratio
json.loads time / detect time (1.0 would be parse speed) and the peak RSS of both runs: the
detectors keep state per key and window, not per event read, so the longer file should not need
more memory once the windows (the care window is the longest, 30 days) are full.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

from detectors.models import AccessEvent
from detectors.runner import detect_stream

FIRST_DAY = date(2026, 1, 5)


def _write(path: Path, practices: int, days: int) -> int:
    """Simulated days appended a few at a time, so the generator's memory stays small."""
    from streams.demo.simulate import simulate

    lines = 0
    with path.open("w") as out:
        for offset in range(0, days, 10):
            chunk = simulate(
                practices, min(10, days - offset), FIRST_DAY + timedelta(days=offset), seed=offset
            )
            for event in chunk.events:
                out.write(json.dumps(event) + "\n")
            lines += len(chunk.events)
    return lines


def _child(kind: str, path: Path) -> None:
    """One measure in this process: seconds and peak RSS (MiB), as JSON on stdout."""
    started = time.perf_counter()
    if kind == "json":
        with path.open("rb") as source:
            for line in source:
                json.loads(line)
    else:
        _detect(path)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mib": peak}))


def _detect(path: Path) -> None:
    """What ``guetteur detect`` does, minus its output: decode, pseudonymise, detect."""
    from datetime import timedelta as span

    from detectors.policy import Policy
    from detectors.registry import all_detectors
    from streams.decode import Rejected, decode
    from streams.keys import Key
    from streams.minimise import Minimiser
    from streams.pseudonym import Pseudonymizer

    pseudonymizer = Pseudonymizer(Key("bench", b"bench-key-0123456789abcdef0123456789"))
    policy = Policy()
    minimiser = Minimiser(policy.privacy, policy.export, pseudonymizer)

    def events() -> Iterator[AccessEvent]:
        with path.open("rb") as source:
            for line in source:
                event = decode(line.rstrip(b"\n"))
                if not isinstance(event, Rejected):
                    yield minimiser.protect(event)[0]

    detect_stream(events(), all_detectors(policy), span(hours=1))


def _measure(kind: str, path: Path) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.detect_bench", "--child", kind, str(path)],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--practices", type=int, default=25)
    parser.add_argument("--days", type=int, default=32, help="the short file; the long has 10x")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child[0], Path(args.child[1]))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for days in (args.days, args.days * 10):
            path = Path(tmp) / f"{days}.jsonl"
            print(f"writing {days} days at {args.practices} practices...", file=sys.stderr)
            lines = _write(path, args.practices, days)
            print(f"measuring {lines:,} events...", file=sys.stderr)
            parse = _measure("json", path)
            detect = _measure("detect", path)
            rows.append((lines, parse, detect))
            path.unlink()
    print(f"{'events':>10}  {'json.loads':>10}  {'detect':>8}  {'ratio':>6}  {'peak RSS':>9}")
    for lines, parse, detect in rows:
        ratio = parse["seconds"] / detect["seconds"]
        print(
            f"{lines:>10,}  {parse['seconds']:>9.1f}s  {detect['seconds']:>7.1f}s  "
            f"{ratio:>5.2f}x  {detect['peak_mib']:>6.0f} MiB"
        )


if __name__ == "__main__":
    main()
