"""Build and install the ``GET /`` banner plugin into the local Elasticsearch distribution.

See ``esroot/RootBannerPlugin.java`` for why it exists. It is compiled with the machine's JDK
against the distribution's own jars: nothing is downloaded.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import zipfile
from importlib import resources
from pathlib import Path

from streams.stack.service import StackError

SOURCE = Path(str(resources.files("streams.stack") / "esroot" / "RootBannerPlugin.java"))
NAME = "guetteur-root-banner"


def install(es_home: Path, es_version: str, java_home: Path) -> None:
    javac = java_home / "bin" / "javac"
    if not javac.exists():
        found = shutil.which("javac")
        if found is None:
            raise StackError(
                "elasticsearch",
                "a Java compiler (javac) is needed once to build the node's `GET /` plugin; "
                "install it with `apt-get install openjdk-17-jdk-headless` and run again.",
            )
        javac = Path(found)
    target = es_home / "plugins" / NAME
    with tempfile.TemporaryDirectory() as build:
        result = subprocess.run(
            [
                str(javac),
                "-nowarn",
                "--release",
                "17",
                "-cp",
                f"{es_home / 'lib'}/*",
                "-d",
                build,
                str(SOURCE),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise StackError(
                "elasticsearch", f"compiling {SOURCE.name} failed:\n{result.stderr[-1500:]}"
            )
        target.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(target / f"{NAME}.jar", "w") as jar:
            for path in sorted(Path(build).rglob("*.class")):
                jar.write(path, path.relative_to(build).as_posix())
    (target / "plugin-descriptor.properties").write_text(
        "description=GET / banner for the local development node (see RootBannerPlugin.java)\n"
        f"version={es_version}\n"
        f"name={NAME}\n"
        "classname=org.guetteur.esroot.RootBannerPlugin\n"
        "java.version=17\n"
        f"elasticsearch.version={es_version}\n"
    )
