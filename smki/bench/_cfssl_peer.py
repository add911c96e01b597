"""CFSSL as a peer for ``smki bench http --peer cfssl``: the same Device CSRs through its sign API.

``cfssl serve`` (Debian's ``golang-cfssl``, see ``scripts/system-deps.sh``) with a fresh P-256 CA,
on 127.0.0.1 and a free port, plain HTTP (no TLS: that favours CFSSL), and ``connections`` client
threads, each with its own keep-alive connection, posting one CSR per ``/api/v1/cfssl/sign``
request until every CSR is signed. CFSSL has no batch API: one request per certificate is how it
is used. It checks each CSR's signature and signs a certificate, as smki does, but keeps nothing
(no database, no audit). The clock runs from the first request to the last answer.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

CONNECTIONS = 8


@dataclass(frozen=True)
class PeerRun:
    name: str
    csrs: int
    seconds: float
    certs_per_second: float


def available() -> bool:
    return shutil.which("cfssl") is not None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _ca(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench peer CA")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "ca.pem", directory / "ca-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def _pem_csr(der: bytes) -> str:
    body = base64.encodebytes(der).decode().replace("\n", "")
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return "-----BEGIN CERTIFICATE REQUEST-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE REQUEST-----\n"


def run_cfssl(csrs: list[bytes], connections: int = CONNECTIONS) -> PeerRun:
    """Sign every CSR through a fresh ``cfssl serve``; raises RuntimeError if any is refused."""
    import httpx

    with tempfile.TemporaryDirectory(prefix="smki-cfssl-") as tmp:
        cert_path, key_path = _ca(Path(tmp))
        port = _free_port()
        server = subprocess.Popen(["cfssl", "serve", "-address", "127.0.0.1", "-port", str(port), "-ca", str(cert_path),
                                   "-ca-key", str(key_path), "-loglevel", "5"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}/api/v1/cfssl/sign"
            bodies = [json.dumps({"certificate_request": _pem_csr(der)}).encode() for der in csrs]
            _wait_for(url)
            failures: list[str] = []
            lock = threading.Lock()
            next_index = [0]

            def worker() -> None:
                with httpx.Client(timeout=60) as client:  # one keep-alive connection per thread
                    while True:
                        with lock:
                            index = next_index[0]
                            next_index[0] += 1
                        if index >= len(bodies):
                            return
                        response = client.post(url, content=bodies[index],
                                               headers={"Content-Type": "application/json"})
                        if response.status_code != 200 or not response.json().get("success"):
                            with lock:
                                failures.append(response.text[:200])

            threads = [threading.Thread(target=worker) for _ in range(connections)]
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            seconds = time.perf_counter() - started
            if failures:
                raise RuntimeError(f"cfssl refused {len(failures)} CSRs, e.g. {failures[0]}")
        finally:
            server.terminate()
            server.wait(10)
    return PeerRun("cfssl", len(csrs), round(seconds, 3), round(len(csrs) / seconds, 1))


def _wait_for(url: str) -> None:
    import httpx

    deadline = time.monotonic() + 20
    while True:
        try:
            httpx.get(url.replace("/sign", "/info"), timeout=2)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise RuntimeError("cfssl serve did not start") from None
            time.sleep(0.1)
