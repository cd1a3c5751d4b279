"""The syslog receiver's own small PKI: a CA, a server and a client certificate, by ``openssl``.

IHE ATNA asks for TLS with mutual authentication (RFC 5425). A deployment brings its own CA
(``GUETTEUR_STACK_SYSLOG_TLS_CA``...); the local stack, unless told so, makes one on first
start, so the TLS input works out of the box and local senders and tests have a client
certificate. Made with Debian's ``openssl`` command: no Python dependency for a few files.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

from streams.stack.service import StackError

SERVICE = "syslog"  # whose errors these are (streams.stack.rsyslog.RsyslogService)
# RSA: what every ATNA sender's TLS stack takes.
ORGANISATION = "Guetteur local stack"
CA_SUBJECT = f"/O={ORGANISATION}/CN=Guetteur local syslog CA"
CLIENT_NAME = "atna-client"
RSA_KEY = "-algorithm RSA -pkeyopt rsa_keygen_bits:3072"
CA_DAYS = 3650
LEAF_DAYS = 1825


class LocalPki:
    """A CA of the stack's own with a server and a client certificate, made with ``openssl``.

    Files: ``ca.pem``/``ca.key``, ``server.pem``/``server.key`` (subject alternative names
    127.0.0.1, localhost and the stack's host), ``client.pem``/``client.key`` (CN atna-client).
    Keys are 0600. A pair that exists is kept as it is, whatever its names or dates.
    """

    def __init__(self, directory: Path):
        self.dir = directory
        self.ca_cert, self.ca_key = directory / "ca.pem", directory / "ca.key"
        self.server_cert, self.server_key = directory / "server.pem", directory / "server.key"
        self.client_cert, self.client_key = directory / "client.pem", directory / "client.key"

    def ensure(self, host: str, *, server: bool = True, client: bool = True) -> None:
        """Create what is missing: the CA, then the server and/or client pairs it signs."""
        pairs = [(self.ca_cert, self.ca_key)]
        pairs += [(self.server_cert, self.server_key)] if server else []
        pairs += [(self.client_cert, self.client_key)] if client else []
        for cert, key in pairs:
            if cert.exists() != key.exists():
                present, absent = (cert, key) if cert.exists() else (key, cert)
                raise StackError(
                    SERVICE,
                    f"{present} exists without {absent}: restore it, or remove {self.dir} "
                    "to have a new CA and certificates made (senders then need the new ones)",
                )
        missing = [(cert, key) for cert, key in pairs if not cert.exists()]
        if not missing:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.dir, prefix=".new-") as scratch:
            work = Path(scratch)
            config = work / "openssl.cnf"
            config.write_text(_openssl_config(host))
            for cert, key in missing:
                new_key, new_cert = work / key.name, work / cert.name
                _write_private(new_key, _openssl(*f"genpkey {RSA_KEY}".split()))
                if cert == self.ca_cert:
                    args = ["req", "-x509", "-new", "-subj", CA_SUBJECT, "-days", str(CA_DAYS)]
                    args += ["-key", str(new_key), "-config", str(config), "-extensions", "v3_ca"]
                    _openssl(*args, "-sha256", "-set_serial", _serial(), "-out", str(new_cert))
                else:
                    leaf = "server" if cert == self.server_cert else "client"
                    name = "localhost" if leaf == "server" else CLIENT_NAME
                    args = ["req", "-new", "-subj", f"/O={ORGANISATION}/CN={name}"]
                    request = _openssl(*args, "-key", str(new_key), "-config", str(config))
                    args = ["x509", "-req", "-CA", str(self.ca_cert), "-CAkey", str(self.ca_key)]
                    args += ["-extfile", str(config), "-extensions", f"v3_{leaf}"]
                    args += ["-days", str(LEAF_DAYS), "-sha256", "-set_serial", _serial()]
                    _openssl(*args, "-out", str(new_cert), stdin=request)
                # Hard links never replace a file: a pair made meanwhile by another start stays
                # whole (leaves are signed by the CA in place, whoever made it).
                try:
                    os.link(new_key, key)
                except FileExistsError:
                    continue
                with contextlib.suppress(FileExistsError):
                    os.link(new_cert, cert)


def _openssl_config(host: str) -> str:
    names = ["IP:127.0.0.1", "DNS:localhost"]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        names.append(f"DNS:{host}")
    else:
        if not address.is_unspecified:
            names.append(f"IP:{address}")
    alt_names = ", ".join(dict.fromkeys(names))
    leaf = """basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""
    return f"""# Written by the local stack while making its syslog CA and certificates.
[req]
distinguished_name = dn
prompt = no
[dn]
[v3_ca]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[v3_server]
{leaf}extendedKeyUsage = serverAuth
subjectAltName = {alt_names}
[v3_client]
{leaf}extendedKeyUsage = clientAuth
subjectAltName = DNS:{CLIENT_NAME}
"""


def _serial() -> str:
    return "0x" + secrets.token_hex(16)


def _write_private(path: Path, content: bytes) -> None:
    """A private key: 0600 from the moment it exists."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write(content)


def _openssl(*args: str, stdin: bytes | None = None) -> bytes:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise StackError(
            SERVICE,
            "`openssl` is not installed (it makes the TLS input's certificates): "
            "`sudo apt-get install -y openssl`",
        )
    result = subprocess.run([openssl, *args], input=stdin, capture_output=True, check=False)
    if result.returncode != 0:
        problem = result.stderr.decode(errors="replace").strip()
        raise StackError(SERVICE, f"openssl {args[0]} failed: {problem}")
    return result.stdout
