"""Apache Kafka in KRaft mode: one combined broker + controller on loopback.

Jars come from Maven Central (``maven/kafka.pom.xml``); storage is formatted once with
``kafka.tools.StorageTool``; the broker runs as ``java -cp libs/* kafka.Kafka server.properties``.
"""

from __future__ import annotations

import base64
import re
import subprocess
import uuid
from importlib import resources
from pathlib import Path

from streams.settings import StackSettings
from streams.stack import process, toolchain
from streams.stack.service import Progress, ServiceStatus, StackError, stop_recorded

POM = Path(str(resources.files("streams.stack") / "maven" / "kafka.pom.xml"))

_LOG4J = """\
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.org.apache.kafka.controller=INFO
log4j.logger.state.change.logger=WARN
"""


class KafkaService:
    name = "kafka"

    def __init__(self, settings: StackSettings):
        self.settings = settings
        self.version = toolchain.pom_property(POM, "kafka.version")
        self.home = settings.dir / "cache" / f"kafka-{self.version}"
        self.libs = self.home / "libs"
        self.config_dir = settings.dir / "kafka" / "config"
        self.data_dir = settings.dir / "data" / "kafka"
        self.pid_file = settings.dir / "run" / "kafka.pid"

    @property
    def log_file(self) -> Path:
        return self.settings.dir / "logs" / "kafka.log"

    @property
    def properties_file(self) -> Path:
        return self.config_dir / "server.properties"

    # -- install -----------------------------------------------------------------------------

    def installed(self) -> bool:
        return (self.home / ".complete").is_file()

    def install(self, progress: Progress) -> None:
        if self.installed():
            return
        progress(f"fetching Apache Kafka {self.version} from Maven Central")
        toolchain.copy_dependencies(
            POM, self.libs, self.settings.dir / "logs" / "maven-kafka.log", progress
        )
        (self.home / ".complete").write_text(self.version + "\n")

    # -- run ---------------------------------------------------------------------------------

    def start(self) -> None:
        java = toolchain.java_home() / "bin" / "java"
        self._write_config()
        self._format_storage(java)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        heap = self.settings.kafka_heap
        command = [
            str(java),
            f"-Xms{heap}",
            f"-Xmx{heap}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{self.config_dir / 'log4j.properties'}",
            "-cp",
            f"{self.libs}/*",
            "kafka.Kafka",
            str(self.properties_file),
        ]
        with self.log_file.open("ab") as log:
            proc = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # survives the CLI that started it
            )
        self.pid_file.write_text(f"{proc.pid}\n")

    def _write_config(self) -> None:
        s = self.settings
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        properties = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{s.host}:{s.kafka_controller_port}",
            "listeners": f"PLAINTEXT://{s.host}:{s.kafka_port},CONTROLLER://{s.host}:{s.kafka_controller_port}",
            "advertised.listeners": f"PLAINTEXT://{s.host}:{s.kafka_port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": "4",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "8",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # Topics are created on purpose (`guetteur` declares them); a typo must not
            # silently create a new, empty topic.
            "auto.create.topics.enable": "false",
            "log.retention.hours": "168",
        }
        text = "".join(f"{key}={value}\n" for key, value in properties.items())
        self.properties_file.write_text("# written by `guetteur stack up`\n" + text)
        (self.config_dir / "log4j.properties").write_text(_LOG4J)

    def _format_storage(self, java: Path) -> None:
        """Format the KRaft log directory once; later starts reuse it (and its topics)."""
        if (self.data_dir / "meta.properties").is_file():
            return
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        result = subprocess.run(
            [
                str(java),
                f"-Dlog4j.configuration=file:{self.config_dir / 'log4j.properties'}",
                "-cp",
                f"{self.libs}/*",
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id,
                "-c",
                str(self.properties_file),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise StackError(
                self.name,
                f"formatting KRaft storage in {self.data_dir} failed: "
                f"{(result.stdout + result.stderr).strip()[-800:]}",
            )

    def pid(self) -> int | None:
        return process.read_pid(self.pid_file)

    def running(self) -> bool:
        return process.is_ours(self.pid(), str(self.properties_file))

    def ready(self) -> bool:
        """The broker answers a metadata request (what every client does first)."""
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        try:
            admin = KafkaAdminClient(
                bootstrap_servers=self.settings.kafka_bootstrap,
                request_timeout_ms=3000,
                client_id="guetteur-stack",
            )
        except (KafkaError, OSError, ValueError):
            return False
        try:
            return bool(admin.describe_cluster().get("brokers"))
        except (KafkaError, OSError):
            return False
        finally:
            admin.close()

    def stop(self) -> bool:
        return stop_recorded(self, self.pid(), 45, self.pid_file)

    def ports(self) -> dict[str, int]:
        return {
            "GUETTEUR_STACK_KAFKA_PORT": self.settings.kafka_port,
            "GUETTEUR_STACK_KAFKA_CONTROLLER_PORT": self.settings.kafka_controller_port,
        }

    def reported_version(self) -> str:
        """The version the running broker printed at start-up (its own word, not the pom's)."""
        found = re.findall(r"Kafka version: (\S+)", process.tail(self.log_file, 400))
        return found[-1] if found else self.version

    def status(self) -> ServiceStatus:
        running = self.running()
        return ServiceStatus(
            name=self.name,
            running=running,
            version=self.reported_version() if running else self.version,
            address=self.settings.kafka_bootstrap,
            pid=self.pid() if running else None,
            log_file=str(self.log_file),
            detail=f"KRaft controller on port {self.settings.kafka_controller_port}",
        )
