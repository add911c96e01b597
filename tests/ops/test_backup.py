"""Backup and restore (issue 12, point 4): the round trip, the manifest, and what is never in it.

After a restore into a new home: ``smki audit verify`` passes, the same certificates are found,
and issuance and CRL publication continue (new serials, the next CRL number) — on SQLite, or on
PostgreSQL into a new empty database when the suite runs there.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from smki.ca.devcsr import make_device_csr, make_organisation_csr
from smki.domain import RemotePartyRole, Usage
from smki.store import Store
from tests.cli.helpers import smki, smki_env
from tests.conftest import ADMIN_URL

ENTITY = bytes.fromhex("90B3D51F30010000")


def _csr(der: bytes) -> bytes:
    return x509.load_der_x509_csr(der).public_bytes(Encoding.PEM)


def _serials(url: str) -> set[str]:
    store = Store.open(url)
    try:
        with store.engine.connect() as conn:
            return {row[0] for row in conn.exec_driver_sql("SELECT serial FROM certificates")}
    finally:
        store.close()


def test_backup_verify_restore_round_trip(tmp_path: Path, database_url: str, empty_database_url: str) -> None:
    env = smki_env(database_url)
    home = tmp_path / "home"
    assert smki(["ca", "init", "--home", str(home)], env).code == 0
    (tmp_path / "org.csr").write_bytes(_csr(make_organisation_csr(ENTITY, RemotePartyRole.SUPPLIER, Usage.KA)))
    assert smki(["issue", "org", str(tmp_path / "org.csr"), "--out", str(tmp_path / "org.pem"),
                 "--home", str(home)], env).code == 0
    batch = tmp_path / "batch"
    batch.mkdir()
    for i in range(5):
        (batch / f"d{i}.csr").write_bytes(_csr(make_device_csr(bytes.fromhex(f"00DB00000000AA{i:02X}"), Usage.DS)))
    assert smki(["issue", "batch", str(batch), "--out", str(tmp_path / "certs"), "--home", str(home)], env).code == 0
    assert smki(["crl", "publish", "--home", str(home)], env).code == 0
    (home / "api").mkdir()
    (home / "api" / "server-key.pem").write_bytes(b"-----BEGIN PRIVATE KEY-----\nMIGH\n-----END PRIVATE KEY-----\n")
    before = _serials(database_url)
    assert len(before) == 3 + 1 + 5

    archive = tmp_path / "backups" / "smki-1.tar.gz"
    created = smki(["backup", "create", "--out", str(archive), "--home", str(home)], env)
    assert created.code == 0, created.err
    assert "not included: api/server-key.pem (plaintext private key" in created.out
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        for name, entry in manifest["files"].items():
            assert hashlib.sha256(tar.extractfile(name).read()).hexdigest() == entry["sha256"]  # type: ignore[union-attr]
        keys = [tar.extractfile(n).read() for n in names if n.startswith("keys/")]  # type: ignore[union-attr]
    assert {"smki.toml", "root.pem", "organisation-ca.pem", "device-ca.pem", "crl/organisation-ca.crl",
            "crl/root.arl", "keys/root.key.pem"} <= names
    assert ("database/smki.pgdump" if ADMIN_URL else "database/smki.db") in names
    assert "api/server-key.pem" not in names
    assert keys and all(k.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----") for k in keys)
    assert manifest["schema"] and manifest["key_backend"] == "file"
    verified = smki(["backup", "verify", str(archive)], env)
    assert verified.code == 0 and "OK" in verified.out

    new_home = tmp_path / "restored"
    restore_env = dict(env)
    if ADMIN_URL:
        restore_args = ["--database-url", empty_database_url]
        restore_env.pop("SMKI_DATABASE_URL")
        new_url = empty_database_url
    else:
        restore_args = []
        restore_env.pop("SMKI_DATABASE_URL")
        new_url = f"sqlite:///{(new_home / 'smki.db').resolve()}"
    restored = smki(["backup", "restore", str(archive), "--home", str(new_home), *restore_args], restore_env)
    assert restored.code == 0, restored.err
    audit = smki(["audit", "verify", "--home", str(new_home)], restore_env)
    assert audit.code == 0, audit.err
    assert _serials(new_url) == before
    assert (new_home / "root.pem").read_bytes() == (home / "root.pem").read_bytes()
    found = smki(["cert", "show", str(tmp_path / "org.pem"), "--home", str(new_home)], restore_env)
    assert found.code == 0, found.err  # the restored Repository knows the certificate

    more = tmp_path / "more"
    more.mkdir()
    for i in range(3):
        (more / f"d{i}.csr").write_bytes(_csr(make_device_csr(bytes.fromhex(f"00DB00000000BB{i:02X}"), Usage.KA)))
    assert smki(["issue", "batch", str(more), "--out", str(tmp_path / "more-certs"), "--home", str(new_home)],
                restore_env).code == 0
    after = _serials(new_url)
    assert before < after and len(after - before) == 3
    published = smki(["crl", "publish", "--kind", "CRL", "--home", str(new_home)], restore_env)
    assert published.code == 0, published.err
    assert (new_home / "crl" / "organisation-ca-2.crl").exists()

    again = smki(["backup", "restore", str(archive), "--home", str(new_home), *restore_args], restore_env)
    assert again.code == 1 and "backup.home-not-empty" in again.err


def test_verify_names_an_altered_or_extra_member(tmp_path: Path) -> None:
    archive = tmp_path / "b.tar.gz"
    payload = b"root certificate"
    manifest = {"format": 1, "files": {"root.pem": {"sha256": hashlib.sha256(payload).hexdigest(),
                                                    "size": len(payload)}}, "excluded": []}

    def write(members: dict[str, bytes]) -> None:
        with tarfile.open(archive, "w:gz") as tar:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))

    env = smki_env("sqlite:///unused.db")
    write({"manifest.json": json.dumps(manifest).encode(), "root.pem": b"root certificatE"})
    result = smki(["backup", "verify", str(archive)], env)
    assert result.code == 1 and "backup.corrupt" in result.err and "root.pem does not match its sha256" in result.err
    write({"manifest.json": json.dumps(manifest).encode(), "root.pem": payload, "keys/x.pem": b"x"})
    result = smki(["backup", "verify", str(archive)], env)
    assert result.code == 1 and "keys/x.pem is not in the manifest" in result.err
    key = b"-----BEGIN EC PRIVATE KEY-----\nAA\n-----END EC PRIVATE KEY-----\n"
    manifest["files"]["k.pem"] = {"sha256": hashlib.sha256(key).hexdigest(), "size": len(key)}
    write({"manifest.json": json.dumps(manifest).encode(), "root.pem": payload, "k.pem": key})
    result = smki(["backup", "verify", str(archive)], env)
    assert result.code == 1 and "k.pem holds a plaintext private key" in result.err
