"""A Guetteur worker run as a child process (demo, integration tests, benchmarks).

Running the real ``guetteur worker`` command, not an in-process imitation, means what is tested
is what operators run; killing it with SIGKILL is how crash-recovery is proven.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path


class WorkerProcess:
    def __init__(self, log_file: Path, env: dict[str, str] | None = None):
        self.log_file = log_file
        # Unbuffered: the log of a worker killed on purpose must hold its last lines.
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        if self.proc is not None:
            raise RuntimeError("this worker was already started; make a new WorkerProcess")
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streams.cli.main", "worker"],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                start_new_session=True,
            )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 30.0) -> int | None:
        """Graceful stop (SIGTERM: Faust commits offsets and leaves the group)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._unregister()
        return self.proc.returncode

    def kill(self) -> None:
        """Crash on purpose: no commit, no goodbye. (Its Prometheus registration, which a real
        crash leaves for on-call to see, is removed: a crash a test made is nobody's page.)"""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._unregister()

    def _unregister(self) -> None:
        from streams.settings import StackSettings
        from streams.stack import LocalStack

        if self.proc is not None:
            targets = LocalStack(StackSettings()).prometheus.targets_dir
            (targets / f"worker-{self.proc.pid}.json").unlink(missing_ok=True)

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
