"""Pid files and process control for the stack's own processes.

``stack down`` must stop only what ``stack up`` started: a pid alone is not proof (pids are
reused), so every check also looks for a marker in the process's command line.
"""

from __future__ import annotations

import os
import signal
import time
from collections import deque
from pathlib import Path


def read_pid(pid_file: Path) -> int | None:
    try:
        text = pid_file.read_text().strip()
    except (FileNotFoundError, PermissionError):
        return None
    return int(text) if text.isdigit() else None


def command_line(pid: int) -> str:
    """The process's argv joined by spaces, or '' when it is gone (Linux /proc)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


def is_ours(pid: int | None, marker: str) -> bool:
    """True when ``pid`` is alive and its command line carries ``marker`` (a path of ours)."""
    if pid is None:
        return False
    if not _is_running(pid):
        return False
    return marker in command_line(pid)


def _is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    try:
        # A zombie (state Z) has exited; its parent just has not reaped it yet.
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def terminate(pid: int, timeout: float = 30.0) -> bool:
    """SIGTERM (graceful: Kafka flushes, Elasticsearch closes shards), SIGKILL after ``timeout``.

    Returns True once the process is gone.
    """
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _is_running(pid):
            return True
        time.sleep(0.2)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    time.sleep(0.5)
    return not _is_running(pid)


def tail(path: Path, lines: int = 20) -> str:
    """Last ``lines`` lines of a log file, for error messages; '' when there is none."""
    try:
        with path.open(errors="replace") as handle:
            return "".join(deque(handle, maxlen=lines))
    except FileNotFoundError:
        return ""
