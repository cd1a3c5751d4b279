"""Elasticsearch 8: one node on loopback, from Elastic's integration-test distribution.

That distribution has no bundled JDK (it runs on the machine's Java 17) and refuses to run as
root, so when the stack is started by root the node runs as a dedicated unprivileged account
that the set-up creates. Security is off on this loopback-only development node (synthetic data,
nothing listens beyond 127.0.0.1); ``docker-compose.yml`` shows the secured production settings.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import urllib.error
import urllib.request
import zipfile
from importlib import resources
from pathlib import Path
from typing import Any

from streams.settings import StackSettings
from streams.stack import es_root_plugin, process, toolchain
from streams.stack.service import Progress, ServiceStatus, StackError, stop_recorded

POM = Path(str(resources.files("streams.stack") / "maven" / "elasticsearch.pom.xml"))


class ElasticsearchService:
    name = "elasticsearch"

    def __init__(self, settings: StackSettings):
        self.settings = settings
        self.version = toolchain.pom_property(POM, "es.version")
        self.home = settings.dir / "cache" / f"elasticsearch-{self.version}"
        self.config_dir = settings.dir / "elasticsearch" / "config"
        self.data_dir = settings.dir / "data" / "elasticsearch"
        self.logs_dir = settings.dir / "logs" / "elasticsearch"
        self.run_dir = settings.dir / "run" / "elasticsearch"

    @property
    def log_file(self) -> Path:
        return self.logs_dir / "guetteur-local.log"

    @property
    def launcher_log(self) -> Path:
        return self.logs_dir / "launcher.log"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "elasticsearch.pid"

    # -- install -----------------------------------------------------------------------------

    def installed(self) -> bool:
        return (self.home / ".complete").is_file()

    def install(self, progress: Progress) -> None:
        if self.installed():
            return
        progress(f"fetching Elasticsearch {self.version} from Maven Central")
        download = self.settings.dir / "cache" / "downloads"
        toolchain.copy_dependencies(
            POM, download, self.settings.dir / "logs" / "maven-elasticsearch.log", progress
        )
        archive = download / f"elasticsearch-{self.version}.zip"
        progress(f"unpacking {archive.name}")
        _unzip_keeping_modes(archive, self.home)
        progress("building the node's `GET /` banner plugin")
        es_root_plugin.install(self.home, self.version, toolchain.java_home())
        (self.home / ".complete").write_text(self.version + "\n")
        archive.unlink()

    # -- run ---------------------------------------------------------------------------------

    def start(self) -> None:
        java_home = toolchain.java_home()
        self._write_config()
        account = self._account()
        env = {
            "ES_JAVA_HOME": str(java_home),
            "ES_PATH_CONF": str(self.config_dir),
            "ES_JAVA_OPTS": f"-Xms{self.settings.es_heap} -Xmx{self.settings.es_heap}",
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        }
        command = [str(self.home / "bin" / "elasticsearch"), "-d", "-p", str(self.pid_file)]
        if account is not None:
            command = ["runuser", "-u", account, "--", "env", *_env_args(env), *command]
        self.launcher_log.parent.mkdir(parents=True, exist_ok=True)
        # `-d` daemonises once the node has started (or failed), which takes 15-40 s.
        with self.launcher_log.open("ab") as log:
            result = subprocess.run(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env if account is None else None,
                timeout=self.settings.start_timeout,
                check=False,
            )
        if result.returncode != 0:
            raise StackError(
                self.name,
                f"the node failed to start (launcher exit {result.returncode})",
                self.log_file if self.log_file.exists() else self.launcher_log,
                process.tail(self.log_file if self.log_file.exists() else self.launcher_log),
            )

    def _write_config(self) -> None:
        """A node config of our own (ES_PATH_CONF), seeded from the distribution's defaults."""
        s = self.settings
        if not (self.config_dir / "jvm.options").is_file():
            shutil.copytree(self.home / "config", self.config_dir, dirs_exist_ok=True)
        for directory in (self.data_dir, self.logs_dir, self.run_dir):
            directory.mkdir(parents=True, exist_ok=True)
        settings = {
            "cluster.name": "guetteur-local",
            "node.name": "guetteur-es",
            "network.host": s.host,
            "http.port": s.es_port,
            "transport.port": s.es_transport_port,
            "discovery.type": "single-node",
            "path.data": str(self.data_dir),
            "path.logs": str(self.logs_dir),
            # Loopback-only development node holding synthetic data: see the module docstring.
            "xpack.security.enabled": False,
            # A nearly full disk must not flip our indices read-only in the middle of a test.
            "cluster.routing.allocation.disk.threshold_enabled": False,
            "action.destructive_requires_name": True,
        }
        lines = [f"{key}: {json.dumps(value)}" for key, value in settings.items()]
        (self.config_dir / "elasticsearch.yml").write_text(
            "# written by `guetteur stack up`\n" + "\n".join(lines) + "\n"
        )

    def _account(self) -> str | None:
        """The unprivileged account to run as when we are root (created on first use)."""
        if os.geteuid() != 0:
            return None
        user = self.settings.es_user
        try:
            pwd.getpwnam(user)
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", user],
                check=True,
                capture_output=True,
            )
        for directory in (self.config_dir, self.data_dir, self.logs_dir, self.run_dir):
            _chown_tree(directory, user)
        reach = subprocess.run(
            ["runuser", "-u", user, "--", "test", "-x", str(self.home / "bin" / "elasticsearch")],
            capture_output=True,
            check=False,
        )
        if reach.returncode != 0:
            raise StackError(
                self.name,
                f"the unprivileged account {user!r} cannot reach {self.home}: a parent directory "
                "is not world-traversable (e.g. under /root). Set GUETTEUR_STACK_DIR to a "
                "directory such as /var/tmp/guetteur-stack and run again.",
            )
        return user

    def pid(self) -> int | None:
        return process.read_pid(self.pid_file)

    def running(self) -> bool:
        return process.is_ours(self.pid(), str(self.home))

    def banner(self) -> dict[str, Any] | None:
        return _get_json(f"{self.settings.es_url}/")

    def ready(self) -> bool:
        """Cluster health is green or yellow (a single node can host every primary shard)."""
        health = _get_json(f"{self.settings.es_url}/_cluster/health")
        return health is not None and health.get("status") in {"green", "yellow"}

    def stop(self) -> bool:
        return stop_recorded(self, self.pid(), 60)

    def ports(self) -> dict[str, int]:
        return {
            "GUETTEUR_STACK_ES_PORT": self.settings.es_port,
            "GUETTEUR_STACK_ES_TRANSPORT_PORT": self.settings.es_transport_port,
        }

    def status(self) -> ServiceStatus:
        running = self.running()
        banner = self.banner() if running else None
        version = banner["version"]["number"] if banner else self.version
        health = _get_json(f"{self.settings.es_url}/_cluster/health") if banner else None
        return ServiceStatus(
            name=self.name,
            running=running,
            version=version,
            address=self.settings.es_url,
            pid=self.pid() if running else None,
            log_file=str(self.log_file),
            detail=f"cluster health {health['status']}" if health else "",
        )


def _get_json(url: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:  # noqa: S310 - our own http URL
            payload: dict[str, Any] = json.load(response)
            return payload
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _env_args(env: dict[str, str]) -> list[str]:
    return [f"{key}={value}" for key, value in env.items()]


def _chown_tree(root: Path, user: str) -> None:
    shutil.chown(root, user=user)
    for path in root.rglob("*"):
        shutil.chown(path, user=user)


def _unzip_keeping_modes(archive: Path, target: Path) -> None:
    """Unpack a zip, keeping Unix modes (zipfile drops them; bin/ scripts must stay executable)."""
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    with zipfile.ZipFile(archive) as bundle:
        for member in bundle.infolist():
            extracted = Path(bundle.extract(member, staging))
            mode = (member.external_attr >> 16) & 0o777
            if mode:
                extracted.chmod(mode)
    (top,) = list(staging.iterdir())  # the zip holds one directory: elasticsearch-<version>/
    shutil.rmtree(target, ignore_errors=True)
    top.rename(target)
    staging.rmdir()
