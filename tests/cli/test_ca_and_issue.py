"""The CA operator's commands end to end: ceremony, issuance, search, export, audit."""

from __future__ import annotations

import csv
import json
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtensionOID

from smki.ca.devcsr import make_device_csr, make_organisation_csr
from smki.domain import RemotePartyRole, Usage
from tests.cli.helpers import PASSPHRASE, openssl_verify, smki

# Every test here runs with CA keys in encrypted files and again on a SoftHSM2 token (issue 7).
pytestmark = pytest.mark.parametrize("key_backend", ["file", "pkcs11"], indirect=True)

DEVICE = bytes.fromhex("00DB123456789001")
ENTITY = bytes.fromhex("90B3D51F30010000")


def _pem_csr(der: bytes) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    return x509.load_der_x509_csr(der).public_bytes(Encoding.PEM)


def test_ceremony_creates_three_cas_with_protected_keys(ca_home: Path, env: dict[str, str], key_backend: str,
                                                       database_url: str) -> None:
    root = x509.load_pem_x509_certificate((ca_home / "root.pem").read_bytes())
    for name in ("organisation-ca.pem", "device-ca.pem"):
        ca = x509.load_pem_x509_certificate((ca_home / name).read_bytes())
        assert ca.issuer == root.subject
        assert isinstance(root.public_key(), ec.EllipticCurvePublicKey)
        ca.verify_directly_issued_by(root)
    if key_backend == "file":
        keys = sorted((ca_home / "keys").iterdir())
        assert [k.name for k in keys] == ["device-ca.key.pem", "organisation-ca.key.pem", "root.key.pem"]
        for key in keys:
            assert stat.S_IMODE(key.stat().st_mode) == 0o600
            assert b"ENCRYPTED PRIVATE KEY" in key.read_bytes()
    else:
        assert not (ca_home / "keys").exists()  # the keys never left the token
    secret = env.get("SMKI_PKCS11_PIN", PASSPHRASE).encode()
    for path in ca_home.rglob("*"):  # the passphrase or PIN is never written anywhere
        if path.is_file():
            assert secret not in path.read_bytes()
            assert b"PRIVATE KEY" not in path.read_bytes() or path.parent.name == "keys"
    if database_url.startswith("sqlite"):
        assert secret not in Path(database_url.removeprefix("sqlite:///")).read_bytes()
    shown = smki(["ca", "show", "--home", str(ca_home)], env)
    assert shown.code == 0 and "device-ca" in shown.out and "org-ca" in shown.out
    again = smki(["ca", "init", "--home", str(ca_home)], env)
    assert again.code == 1
    assert again.err.startswith("error: ca.exists:")
    assert "Traceback" not in again.err


def test_ceremony_publishes_empty_crl_and_arl_that_openssl_checks_against(
        ca_home: Path, env: dict[str, str], tmp_path: Path) -> None:
    """Spec §4.3: the ceremony publishes the first CRL (Organisation CA) and ARL (Root), so a relying
    party's ``openssl verify -crl_check_all`` passes from the first certificate issued."""
    root = x509.load_pem_x509_certificate((ca_home / "root.pem").read_bytes())
    oca = x509.load_pem_x509_certificate((ca_home / "organisation-ca.pem").read_bytes())
    pems = {}
    for kind, issuer, other, published in (("CRL", oca, root, "organisation-ca.crl"), ("ARL", root, oca, "root.arl")):
        out = tmp_path / f"{kind}.pem"
        exported = smki(["crl", "export", "--kind", kind, "--format", "pem", "--out", str(out),
                         "--home", str(ca_home)], env)
        assert exported.code == 0, exported.err
        crl = x509.load_pem_x509_crl(out.read_bytes())
        assert (ca_home / "crl" / published).read_bytes() == crl.public_bytes(Encoding.DER)
        assert crl.issuer == issuer.subject
        assert crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
        assert not crl.is_signature_valid(other.public_key())  # type: ignore[arg-type]
        assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 1
        assert crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier == (
            issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest)
        assert len(crl) == 0 and crl.next_update_utc is not None
        pems[kind] = out
    tail = smki(["audit", "tail", "--json", "--home", str(ca_home)], env)
    published = [(r["action"], r["subject"]) for r in json.loads(tail.out) if r["action"] == "crl.published"]
    assert published == [("crl.published", "CRL#1"), ("crl.published", "ARL#1")]

    der = make_organisation_csr(ENTITY, RemotePartyRole.SUPPLIER, Usage.DS, "TEST SUPPLIER")
    (tmp_path / "org.csr").write_bytes(_pem_csr(der))
    org = tmp_path / "org.pem"
    assert smki(["issue", "org", str(tmp_path / "org.csr"), "--out", str(org), "--home", str(ca_home)], env).code == 0
    trusted = tmp_path / "root+oca.pem"
    trusted.write_bytes((ca_home / "root.pem").read_bytes() + (ca_home / "organisation-ca.pem").read_bytes())

    def verify(*lists: Path) -> subprocess.CompletedProcess[str]:
        crl_files = [arg for path in lists for arg in ("-CRLfile", str(path))]
        return subprocess.run(["openssl", "verify", "-crl_check_all", "-CAfile", str(trusted), *crl_files, str(org)],
                              capture_output=True, text=True)

    checked = verify(pems["CRL"], pems["ARL"])
    assert checked.returncode == 0 and f"{org}: OK" in checked.stdout, checked.stdout + checked.stderr
    without_arl = verify(pems["CRL"])  # the check needs both lists: this is what the ceremony's ARL gives
    assert without_arl.returncode != 0 and "unable to get certificate CRL" in without_arl.stdout + without_arl.stderr


def test_organisation_certificate_verifies_and_is_searchable(ca_home: Path, env: dict[str, str],
                                                            tmp_path: Path) -> None:
    der = make_organisation_csr(ENTITY, RemotePartyRole.SUPPLIER, Usage.KA, "TEST SUPPLIER")
    csr = tmp_path / "org.csr"
    csr.write_bytes(_pem_csr(der))
    out = tmp_path / "org.pem"
    result = smki(["issue", "org", str(csr), "--out", str(out), "--home", str(ca_home)], env)
    assert result.code == 0, result.err
    check = openssl_verify(ca_home / "root.pem", ca_home / "organisation-ca.pem", out)
    assert check.returncode == 0, check.stdout + check.stderr
    cert = x509.load_pem_x509_certificate(out.read_bytes())
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_agreement
    found = smki(["cert", "search", "--entity", "90-B3-D5-1F-30-01-00-00", "--home", str(ca_home)], env)
    assert found.code == 0 and f"{cert.serial_number:032x}" in found.out
    exported = smki(["cert", "export", f"{cert.serial_number:x}", "--format", "der",
                     "--out", str(tmp_path / "org.der"), "--home", str(ca_home)], env)
    assert exported.code == 0
    assert (tmp_path / "org.der").read_bytes() == cert.public_bytes(
        __import__("cryptography.hazmat.primitives.serialization", fromlist=["Encoding"]).Encoding.DER)


def test_device_certificates_are_named_by_eui_and_usage(ca_home: Path, env: dict[str, str], tmp_path: Path) -> None:
    files = []
    for usage in (Usage.DS, Usage.KA):
        der = make_device_csr(DEVICE, usage)
        path = tmp_path / f"{usage.value}.csr"
        path.write_bytes(_pem_csr(der))
        files.append(str(path))
    out = tmp_path / "certs"
    result = smki(["issue", "device", *files, "--out", str(out), "--home", str(ca_home)], env)
    assert result.code == 0, result.err
    ds, ka = out / "00db123456789001-ds.pem", out / "00db123456789001-ka.pem"
    check = openssl_verify(ca_home / "root.pem", ca_home / "device-ca.pem", ds, ka)
    assert check.returncode == 0, check.stdout + check.stderr
    cert = x509.load_pem_x509_certificate(ds.read_bytes())
    san = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    assert san.critical
    assert cert.subject == x509.Name([])


def test_reissue_puts_previous_certificate_not_in_use(ca_home: Path, env: dict[str, str], tmp_path: Path) -> None:
    serials = []
    for round_ in range(2):
        der = make_device_csr(DEVICE, Usage.DS)
        path = tmp_path / f"r{round_}.csr"
        path.write_bytes(_pem_csr(der))
        out = tmp_path / f"out{round_}"
        assert smki(["issue", "device", str(path), "--out", str(out), "--home", str(ca_home)], env).code == 0
        cert = x509.load_pem_x509_certificate((out / "00db123456789001-ds.pem").read_bytes())
        serials.append(f"{cert.serial_number:032x}")
    found = smki(["cert", "search", "--device", "00DB123456789001", "--home", str(ca_home)], env)
    lines = {line.split("│")[1].strip(): line for line in found.out.splitlines() if "│" in line and "00db" in line}
    assert "│ N " in lines[serials[0]] or " N " in lines[serials[0]]
    assert " I " in lines[serials[1]]


def test_batch_reports_bad_csrs_individually(ca_home: Path, env: dict[str, str], tmp_path: Path) -> None:
    source = tmp_path / "batch"
    source.mkdir()
    for i in range(6):
        der = make_device_csr(bytes.fromhex(f"00DB0000000000{i:02X}"), Usage.KA)
        (source / f"good-{i}.csr").write_bytes(_pem_csr(der))
    (source / "garbage.csr").write_bytes(b"this is not a CSR")
    org_der = make_organisation_csr(ENTITY, RemotePartyRole.SUPPLIER, Usage.DS)
    (source / "org.csr").write_bytes(_pem_csr(org_der))
    out = tmp_path / "out"
    result = smki(["issue", "batch", str(source), "--out", str(out), "--workers", "2", "--chunk-size", "3",
                   "--home", str(ca_home)], env)
    assert result.code == 0, result.err
    assert "6 issued, 2 rejected" in result.out
    rows = list(csv.DictReader((out / "results.csv").open()))
    by_item = {row["item"]: row for row in rows}
    assert by_item["garbage.csr"]["status"] == "rejected"
    assert by_item["garbage.csr"]["error_code"] == "csr.malformed"
    assert by_item["org.csr"]["error_code"].startswith("csr.")
    issued = sorted(out.glob("*.pem"))
    assert len(issued) == 6
    check = openssl_verify(ca_home / "root.pem", ca_home / "device-ca.pem", *issued)
    assert check.returncode == 0, check.stdout + check.stderr
    assert smki(["audit", "verify", "--home", str(ca_home)], env).code == 0


def test_errors_are_one_line_never_a_traceback(ca_home: Path, env: dict[str, str], tmp_path: Path) -> None:
    missing = smki(["issue", "org", str(tmp_path / "nope.csr"), "--out", str(tmp_path / "x.pem"),
                    "--home", str(ca_home)], env)
    assert missing.code == 1 and missing.err.startswith("error: input.unreadable:")
    der = make_device_csr(DEVICE, Usage.DS)
    wrong_kind = tmp_path / "device.csr"
    wrong_kind.write_bytes(_pem_csr(der))
    refused = smki(["issue", "org", str(wrong_kind), "--out", str(tmp_path / "x.pem"), "--home", str(ca_home)], env)
    assert refused.code == 1 and refused.err.startswith("error: csr.")
    assert not (tmp_path / "x.pem").exists()
    org_der = make_organisation_csr(ENTITY, RemotePartyRole.SUPPLIER, Usage.DS)
    org_csr = tmp_path / "org.csr"
    org_csr.write_bytes(_pem_csr(org_der))
    locked = smki(["issue", "org", str(org_csr), "--out", str(tmp_path / "x.pem"), "--home", str(ca_home)],
                  dict(env, SMKI_KEY_PASSPHRASE="wrong-passphrase", SMKI_PKCS11_PIN="wrong-pin-0000"))
    assert locked.code == 1 and locked.err.startswith("error: key.locked:")
    assert not (tmp_path / "x.pem").exists()
    for result in (missing, refused, locked):
        assert "Traceback" not in result.err
        assert len(result.err.strip().splitlines()) == 1
    not_found = smki(["cert", "show", "abcdef", "--home", str(ca_home)], env)
    assert not_found.code == 1 and "certificate.not-found" in not_found.err
