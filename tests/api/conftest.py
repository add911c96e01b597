"""HTTP interface fixtures: a CA home with an RA register, SMKI credentials, and live TLS listeners.

The listeners are the real ones (``smki.interfaces.api.server.Listeners``: uvicorn with the
peer-certificate protocol, the credentials CA's server certificate, ``CERT_REQUIRED``) on ephemeral
ports of 127.0.0.1, in a thread of the test process; clients are httpx with client certificates
taken from the PKCS#12 files smki issued.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import Encoding, pkcs12

from smki.audit import AuditEvent
from smki.config import Settings
from smki.domain import CertificatePolicy, Route
from smki.interfaces.api.server import Listeners, prepare
from smki.interfaces.api.settings import ApiSettings, Listen
from smki.services import applications as apps
from smki.services import registry as reg
from smki.services.batch_jobs import BatchRunner
from smki.services.ca_admin import initialise_ca
from smki.services.context import Home, open_home
from smki.services.credentials import issue_credential
from smki.services.staff import add_staff

SECRET = b"http-test-passphrase"
P12_PASSWORD = b"p12-password-123"
PARTY, ARO = "SUPP1", "aro1"
OTHER_PARTY, OTHER_ARO = "SUPP2", "aro2"
ENTITY = bytes.fromhex("90b3d51f30010000")
OTHER_ENTITY = bytes.fromhex("90b3d51f30020000")
OPERATOR, APPROVER = "op1", "ap1"


def qualify(home: Home, party: str, aro: str, entity: bytes, *, device: bool = True) -> None:
    """A supplier Party with SREPT, UEPT, a Gateway Connection, an Entity Identifier, a screened ARO,
    approved for the Organisation policy and (``device``) for the Device policy by two RA staff."""
    with home.store.transaction() as tx:
        tx.registry.add_party(party, f"{party} Energy", "large-supplier")
        tx.registry.update_party(party, srept_passed=date(2019, 1, 10), uept_completed=date(2019, 2, 1))
        tx.registry.start_period(party, "registered-role", "import-supplier", on=date(2019, 2, 1), by="admin")
        tx.registry.start_period(party, "gateway-connection", f"DGC-{party}", on=date(2019, 2, 1), by="admin")
        tx.registry.set_entity(party, entity, [2])
        tx.registry.set_subscription(party, "organisation", "approved")
        tx.append_audit([AuditEvent("admin", "test.setup", party)])
    reg.nominate_aro(home, aro, party, f"Officer {aro}", "SRO Sam", staff_id=OPERATOR)
    reg.verify_aro(home, aro, "passport and utility bill", staff_id=OPERATOR)
    reg.screen_aro(home, aro, date(2021, 3, 1), "BS 7858:2019", staff_id=OPERATOR)
    if device:
        application = apps.apply(home, party, CertificatePolicy.DEVICE, staff_id=OPERATOR).application_id
        apps.add_evidence(home, application, "installation-need", "RAPP 5.5 installation plan", staff_id=OPERATOR)
        apps.propose(home, application, staff_id=OPERATOR)
        apps.approve(home, application, staff_id=APPROVER)


@pytest.fixture
def home(tmp_path: Path, database_url: str) -> Iterator[Home]:
    path = tmp_path / "home"
    initialise_ca(Settings(home=path, database_url=database_url), SECRET, actor="admin")
    opened = open_home(path, SECRET)
    # Capacity limits are switched off here (the SEC's 1 CSR per 0.8 s would pace every test);
    # tests/api/test_capacity.py switches them on.
    opened = replace(opened, settings=opened.settings.configured({"capacity": {"enabled": False}}))
    add_staff(opened, OPERATOR, "Olive Operator", ["ra-operator"], actor="admin")
    add_staff(opened, APPROVER, "Abe Approver", ["ra-approver"], actor="admin")
    qualify(opened, PARTY, ARO, ENTITY)
    qualify(opened, OTHER_PARTY, OTHER_ARO, OTHER_ENTITY)
    try:
        yield opened
    finally:
        opened.close()


@dataclass(frozen=True)
class ClientFiles:
    """A client credential unpacked from its PKCS#12 for httpx/openssl: cert + key PEM, and the CA."""

    cert: Path
    key: Path
    ca: Path
    serial: str

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca))
        context.load_cert_chain(str(self.cert), str(self.key))
        return context


def unpack_p12(data: bytes, directory: Path, name: str, serial: str) -> ClientFiles:
    key, cert, extra = pkcs12.load_key_and_certificates(data, P12_PASSWORD)
    assert key is not None and cert is not None and extra
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}-key.pem"
    ca_path = directory / f"{name}-ca.pem"
    cert_path.write_bytes(cert.public_bytes(Encoding.PEM))
    key_path.write_bytes(key.private_bytes(Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    ca_path.write_bytes(extra[0].public_bytes(Encoding.PEM))
    return ClientFiles(cert_path, key_path, ca_path, serial)


def credential(home: Home, tmp: Path, kind: str, name: str, **kwargs: str) -> ClientFiles:
    issued = issue_credential(home, kind, name, password=P12_PASSWORD, actor="operator:test", **kwargs)
    return unpack_p12(issued.pkcs12, tmp / "creds", f"{kind}-{name}", issued.serial)


@dataclass
class LiveListeners:
    listeners: Listeners
    thread: threading.Thread
    runner: BatchRunner | None
    ca: Path
    clients: list[httpx.Client] = field(default_factory=list)

    def url(self, route: Route) -> str:
        return self.listeners.url(route)

    def client(self, who: ClientFiles | None, route: Route = Route.GATEWAY, **kwargs: object) -> httpx.Client:
        if who is None:
            verify: ssl.SSLContext = ssl.create_default_context(cafile=str(self.ca))
        else:
            verify = who.context()
        client = httpx.Client(base_url=self.url(route), verify=verify, timeout=60, **kwargs)  # type: ignore[arg-type]
        self.clients.append(client)
        return client

    def stop(self) -> None:
        for client in self.clients:
            client.close()
        self.listeners.stop()
        self.thread.join(timeout=15)
        if self.runner is not None:
            self.runner.stop()


def counted(family: str, **labels: str) -> float:
    """The value of counter ``family`` (its name without ``_total``) for exactly ``labels``, in this
    process's metrics registry (the listeners a test starts run in the test's process)."""
    from smki.observability.metrics import registry

    for metric in registry().collect():
        if metric.name == family:
            for sample in metric.samples:
                if sample.name.endswith("_total") and sample.labels == labels:
                    return float(sample.value)
    return 0.0


def start_listeners(home: Home, api: ApiSettings | None = None, *, runner: bool = True) -> LiveListeners:
    api = api or ApiSettings(gateway=Listen("127.0.0.1", 0), spoti=Listen("127.0.0.1", 0), batch_workers=0,
                             batch_poll=0.05)
    from smki.interfaces.api.server import listen_sockets

    files = prepare(home, api)
    batch_runner = BatchRunner(home, workers=api.batch_workers, poll=api.batch_poll) if runner else None
    listeners = Listeners(home, api, files, listen_sockets(api), batch_runner)
    import asyncio

    thread = threading.Thread(target=lambda: asyncio.run(listeners.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not listeners.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the listeners did not start")
        time.sleep(0.02)
    if batch_runner is not None:
        batch_runner.start()
    return LiveListeners(listeners, thread, batch_runner, files.ca)


@pytest.fixture
def api_settings() -> ApiSettings:
    return ApiSettings(gateway=Listen("127.0.0.1", 0), spoti=Listen("127.0.0.1", 0), batch_workers=0,
                       batch_poll=0.05)


@pytest.fixture
def live(home: Home, api_settings: ApiSettings) -> Iterator[LiveListeners]:
    server = start_listeners(home, api_settings)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def aro(home: Home, tmp_path: Path) -> ClientFiles:
    return credential(home, tmp_path, "aro", ARO)


@pytest.fixture
def other_aro(home: Home, tmp_path: Path) -> ClientFiles:
    return credential(home, tmp_path, "aro", OTHER_ARO)


def with_capacity(home: Home, section: dict[str, object]) -> Home:
    """The same home with a ``[capacity]`` section (as if written in smki.toml)."""
    return replace(home, settings=home.settings.configured({"capacity": section}))
