"""A server from a Debian package, run by the stack with its own config, data and log.

Prometheus and Alertmanager are single Go binaries: no download, no JVM. The project's set-up
(``scripts/system-deps.sh``) installs the packages when they are missing; here they are only
configured and started.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path

from streams.settings import StackSettings
from streams.stack import process
from streams.stack.service import Progress, ServiceStatus, StackError, stop_recorded


class DaemonService:
    """Subclasses name the binary, its Debian package, its port and how to configure it."""

    name = ""
    binary = ""
    package = ""
    port_setting = ""

    def __init__(self, settings: StackSettings):
        self.settings = settings
        self.config_dir = settings.dir / self.name
        self.data_dir = settings.dir / "data" / self.name
        self.pid_file = settings.dir / "run" / f"{self.name}.pid"

    # What a subclass provides -----------------------------------------------------------------

    @property
    def port(self) -> int:
        raise NotImplementedError

    def write_config(self) -> None:
        raise NotImplementedError

    def arguments(self) -> list[str]:
        raise NotImplementedError

    # The rest is common -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.settings.host}:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.settings.dir / "logs" / f"{self.name}.log"

    def executable(self) -> str:
        found = shutil.which(self.binary)
        if found is None:
            raise StackError(
                self.name,
                f"`{self.binary}` is not installed: run `make` (it installs missing system "
                f"packages) or `sudo apt-get install -y {self.package}`",
            )
        return found

    def installed(self) -> bool:
        return shutil.which(self.binary) is not None

    def install(self, progress: Progress) -> None:
        self.executable()

    def start(self) -> None:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.write_config()
        with self.log_file.open("ab") as log:
            proc = subprocess.Popen(
                [self.executable(), *self.arguments()],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid_file.write_text(f"{proc.pid}\n")

    def pid(self) -> int | None:
        return process.read_pid(self.pid_file)

    def running(self) -> bool:
        return process.is_ours(self.pid(), str(self.config_dir))

    def ready(self) -> bool:
        try:
            # Our own http:// URL, built from settings.
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=3) as response:  # noqa: S310
                return bool(response.status == 200)
        except OSError:
            return False

    def stop(self) -> bool:
        return stop_recorded(self, self.pid(), 20, self.pid_file)

    def ports(self) -> dict[str, int]:
        return {self.port_setting: self.port}

    def version(self) -> str:
        try:
            result = subprocess.run(
                [self.executable(), "--version"], capture_output=True, text=True, check=False
            )
        except StackError:
            return "not installed"
        found = re.search(r"version (\S+)", result.stdout + result.stderr)
        return found.group(1) if found else "unknown"

    def status(self) -> ServiceStatus:
        running = self.running()
        return ServiceStatus(
            name=self.name,
            running=running,
            version=self.version(),
            address=self.url,
            pid=self.pid() if running else None,
            log_file=str(self.log_file),
        )


def write_json(path: Path, value: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2) + "\n")
