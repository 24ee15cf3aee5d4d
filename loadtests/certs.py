"""A throwaway certificate authority for tests and benchmarks, made with ``openssl``.

    python3 loadtests/certs.py DIR    # writes ca.pem, server.pem, server.key, client.pem, client.key

The CA signs a server certificate for ``localhost`` and ``127.0.0.1`` (and
a client certificate, for ``--ca-certs``). Keys are P-256: quick to make and
to sign with. Made by the ``openssl`` command line (Debian's), so no Python
package is needed; the tests make one per session. Never serve real traffic
with these: the CA's key sits next to them.
"""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Certs", "make_ca", "spki_hash"]

_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass(frozen=True)
class Certs:
    """Paths of the files :func:`make_ca` wrote."""

    ca: Path
    cert: Path
    key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)


def make_ca(directory: Path, name: str = "server", days: int = 2) -> Certs:
    """A CA in ``directory`` (made once, reused) and a server certificate
    ``name.pem``/``name.key`` for localhost signed by it, plus a client one."""
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = directory / "ca.pem", directory / "ca.key"
    if not ca.exists():
        _openssl(
            "req", "-x509", *_EC, "-keyout", ca_key, "-out", ca, "-days", str(days),
            "-subj", "/CN=reactor test CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )  # fmt: skip
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    _sign(directory, ca, ca_key, cert, key, "/CN=localhost", "DNS:localhost,IP:127.0.0.1", "serverAuth", days)
    client_cert, client_key = directory / "client.pem", directory / "client.key"
    if not client_cert.exists():
        _sign(directory, ca, ca_key, client_cert, client_key, "/CN=test client", None, "clientAuth", days)
    return Certs(ca, cert, key, client_cert, client_key)


def _sign(
    directory: Path,
    ca: Path,
    ca_key: Path,
    cert: Path,
    key: Path,
    subject: str,
    names: str | None,
    usage: str,
    days: int,
) -> None:
    csr = directory / (cert.stem + ".csr")
    ext = directory / (cert.stem + ".ext")
    lines = ["basicConstraints=CA:FALSE", f"extendedKeyUsage={usage}"]
    if names:
        lines.append(f"subjectAltName={names}")
    ext.write_text("\n".join(lines) + "\n")
    _openssl("req", *_EC, "-keyout", key, "-out", csr, "-subj", subject)
    _openssl(
        "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
        "-out", cert, "-days", str(days), "-extfile", ext,
    )  # fmt: skip


def spki_hash(cert: Path) -> str:
    """The base64 SHA-256 of ``cert``'s public key: what Chromium's
    ``--ignore-certificate-errors-spki-list`` takes."""
    der = subprocess.run(
        ["openssl", "x509", "-in", str(cert), "-pubkey", "-noout"], check=True, capture_output=True, text=True
    ).stdout
    key = subprocess.run(
        ["openssl", "pkey", "-pubin", "-outform", "der"], input=der.encode(), check=True, capture_output=True
    ).stdout
    return base64.b64encode(hashlib.sha256(key).digest()).decode()


if __name__ == "__main__":
    made = make_ca(Path(sys.argv[1] if len(sys.argv) > 1 else "certs"))
    print(f"CA {made.ca}\ncertificate {made.cert}\nkey {made.key}")
