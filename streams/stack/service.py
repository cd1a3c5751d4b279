"""What every service of the local stack offers, so ``LocalStack`` can drive them alike.

Kafka and Elasticsearch today; Prometheus and Alertmanager slot in as two more ``Service``s.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from streams.stack import process
from streams.stack.process import tail

Progress = Callable[[str], None]


class StackError(Exception):
    """A stack service could not be installed, started or stopped.

    The message says which service, what went wrong, where its log is and its last lines, so
    the reader can act without digging.
    """

    def __init__(
        self, service: str, problem: str, log_file: Path | None = None, log_tail: str = ""
    ):
        self.service = service
        message = f"{service}: {problem}"
        if log_file is not None:
            message += f"\n  log file: {log_file}"
        if log_tail.strip():
            indented = "\n".join(f"    {line}" for line in log_tail.rstrip().splitlines())
            message += f"\n  last lines:\n{indented}"
        super().__init__(message)


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    running: bool
    version: str
    address: str
    pid: int | None
    log_file: str
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Service(Protocol):
    name: str

    @property
    def log_file(self) -> Path: ...

    def installed(self) -> bool: ...

    def install(self, progress: Progress) -> None: ...

    def start(self) -> None: ...

    def ready(self) -> bool: ...

    def running(self) -> bool: ...

    def stop(self) -> bool: ...

    def status(self) -> ServiceStatus: ...

    def ports(self) -> dict[str, int]: ...


def stop_recorded(
    service: Service,
    pid: int | None,
    timeout: float,
    pid_file: Path | None = None,
) -> bool:
    """Stop the service's recorded process (only if it is ours); True if it was running.

    ``pid_file`` is removed when given: Elasticsearch removes its own.
    """
    if not service.running() or pid is None:
        if pid_file is not None:
            pid_file.unlink(missing_ok=True)
        return False
    if not process.terminate(pid, timeout=timeout):
        raise StackError(service.name, f"pid {pid} did not stop", service.log_file)
    if pid_file is not None:
        pid_file.unlink(missing_ok=True)
    return True


def check_ports_free(service: Service, host: str) -> None:
    """Fail before starting when a port is taken: the server's own error is buried in its log."""
    for setting, port in service.ports().items():
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError:
                raise StackError(
                    service.name,
                    f"port {port} on {host} is already in use by another process. Stop it, or "
                    f"choose another port with {setting}=<port>.",
                ) from None


def wait_ready(service: Service, timeout: float, progress: Progress) -> None:
    """Poll ``service.ready()`` until it answers, the process dies, or ``timeout`` passes."""
    started = time.monotonic()
    while True:
        if service.ready():
            return
        waited = time.monotonic() - started
        if not service.running():
            raise StackError(
                service.name,
                f"the process exited during start-up (after {waited:.0f}s)",
                service.log_file,
                tail(service.log_file),
            )
        if waited > timeout:
            raise StackError(
                service.name,
                f"not ready after {timeout:.0f}s (set GUETTEUR_STACK_START_TIMEOUT to wait longer)",
                service.log_file,
                tail(service.log_file),
            )
        progress(f"waiting for {service.name} ({waited:.0f}s)")
        time.sleep(1.0)
