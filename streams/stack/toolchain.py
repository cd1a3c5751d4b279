"""Java and Maven: found, checked and driven, with errors that say what to install.

The stack's servers are JVM programs fetched from Maven Central, so a missing or too-old Java or
Maven is the first thing a newcomer meets: say exactly which Debian package fixes it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

from streams.stack.process import tail
from streams.stack.service import Progress, StackError

MIN_JAVA = 17

_POM_NS = {"m": "http://maven.apache.org/POM/4.0.0"}


def java_home() -> Path:
    """The JDK/JRE home of the ``java`` on PATH, checked to be at least Java 17."""
    java = shutil.which("java")
    if java is None:
        raise StackError(
            "java",
            f"Java {MIN_JAVA}+ was not found on PATH. Install it, e.g. "
            "`apt-get install openjdk-17-jre-headless`, then run the command again.",
        )
    version = java_major_version(java)
    if version < MIN_JAVA:
        raise StackError(
            "java",
            f"{java} is Java {version}; Kafka 3.9 and Elasticsearch 8 need Java {MIN_JAVA}+. "
            "Install `openjdk-17-jre-headless` and put it first on PATH.",
        )
    return Path(java).resolve().parent.parent


def java_major_version(java: str) -> int:
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not match:
        raise StackError("java", f"could not read the version of {java}: {out.strip()[:200]}")
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def maven() -> str:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError(
            "maven",
            "Maven (`mvn`) was not found on PATH; the stack fetches Kafka and Elasticsearch from "
            "Maven Central with it. Install it with `apt-get install maven`, then run again.",
        )
    return mvn


def pom_property(pom: Path, name: str) -> str:
    """Read a ``<properties>`` value: the pom is the one place a server version is pinned."""
    root = ET.parse(pom).getroot()  # noqa: S314 - our own file from the package
    node = root.find(f"m:properties/m:{name}", _POM_NS)
    if node is None or not (node.text or "").strip():
        raise StackError("maven", f"{pom} has no <{name}> property")
    return (node.text or "").strip()


def copy_dependencies(pom: Path, output: Path, log_file: Path, progress: Progress) -> None:
    """Resolve ``pom``'s dependencies from Maven Central and copy them into ``output``.

    Reports each downloaded artifact through ``progress`` (a cold start downloads ~60 files).
    """
    output.mkdir(parents=True, exist_ok=True)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    command = [
        maven(),
        "-B",
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={output}",
        "-DincludeScope=runtime",
    ]
    downloaded = 0
    with (
        log_file.open("w") as log,
        subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        ) as proc,
    ):
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            if "Downloaded from" in line:  # "[INFO] Downloaded from central: ..." with -B
                downloaded += 1
                artifact = line.rsplit("/", 1)[-1].split(" ", 1)[0]
                progress(f"downloaded {downloaded} files from Maven Central ({artifact})")
        code = proc.wait()
    if code != 0:
        raise StackError(
            "maven",
            f"`mvn dependency:copy-dependencies` failed for {pom.name} (exit {code}). Is Maven "
            f"Central reachable? Full output: {log_file}\n{tail(log_file, 15)}",
        )
