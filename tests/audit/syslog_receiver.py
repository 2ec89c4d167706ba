"""A real syslog receiver for the forwarding tests: Debian's rsyslogd (imtcp with the GnuTLS
stream driver, from the rsyslog and rsyslog-gnutls packages), started as a process of the test's
own with a generated configuration and certificates, writing every message it receives, exactly
as received, to a file. Stopped with SIGTERM, as `systemctl stop` would."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

RSYSLOGD = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
GTLS = next(
    iter(sorted(Path("/usr/lib").glob("*/rsyslog/lmnsd_gtls.so"))), Path("/usr/lib/rsyslog/lmnsd_gtls.so")
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 (ECDSA P-256): (ca.pem, server.pem, server.key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "shuqiao test SOC CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem, cert_pem, key_pem = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    key_pem.chmod(0o600)
    return ca_pem, cert_pem, key_pem


class Rsyslog:
    """rsyslogd -n with imtcp/gtls on a free port of 127.0.0.1; `messages()` is what it wrote."""

    def __init__(self, directory: Path) -> None:
        if not os.path.exists(RSYSLOGD) or not GTLS.exists():
            pytest.fail(
                "rsyslogd with its GnuTLS driver is required (apt-get install rsyslog rsyslog-gnutls)",
                pytrace=False,
            )
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.ca, self.cert, self.key = make_certificates(directory)
        self.raw = directory / "received.log"
        self.parsed = directory / "parsed.log"
        work = directory / "work"
        work.mkdir(exist_ok=True)
        self.conf = directory / "rsyslog.conf"
        self.conf.write_text(
            f"""
global(workDirectory="{work}" maxMessageSize="64k"
       defaultNetstreamDriver="gtls" defaultNetstreamDriverCAFile="{self.ca}"
       defaultNetstreamDriverCertFile="{self.cert}" defaultNetstreamDriverKeyFile="{self.key}")
module(load="imtcp" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
input(type="imtcp" address="127.0.0.1" port="{self.port}")
template(name="raw" type="string" string="%rawmsg%\\n")
template(name="parsed" type="string" string="%protocol-version% %app-name% %msgid% %structured-data%\\n")
action(type="omfile" file="{self.raw}" template="raw")
action(type="omfile" file="{self.parsed}" template="parsed")
"""
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [RSYSLOGD, "-n", "-f", str(self.conf), "-i", str(self.dir / "rsyslogd.pid")],
            stdout=subprocess.DEVNULL,
            stderr=open(self.dir / "rsyslogd.err", "ab"),  # noqa: SIM115 (the child holds it)
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rsyslogd exited: {(self.dir / 'rsyslogd.err').read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("rsyslogd did not listen")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)
        self.proc = None

    def lines(self) -> list[bytes]:
        return self.raw.read_bytes().splitlines() if self.raw.exists() else []

    def parsed_lines(self) -> list[str]:
        return self.parsed.read_text().splitlines() if self.parsed.exists() else []
