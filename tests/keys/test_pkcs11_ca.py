"""The whole CA on a SoftHSM2 token: hierarchy, Device and Organisation Certificates, CRL and ARL,
checked with openssl and pkilint exactly as with the file backend (issue 7)."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from smki.ca.crl import build_crl
from smki.ca.csr import check_device_csr, check_organisation_csr
from smki.ca.devcsr import make_device_csr, make_organisation_csr
from smki.ca.device_template import DeviceCertificateFactory
from smki.ca.hierarchy import DEVICE_CA_LABEL, ORGANISATION_CA_LABEL, ROOT_LABEL, create_hierarchy
from smki.ca.lint import Finding, Severity, crl_findings, pkilint_findings
from smki.ca.profiles import build_organisation
from smki.config import Settings
from smki.domain import RemotePartyRole, Usage
from smki.keys.pkcs11 import Pkcs11KeyBackend

pytestmark = pytest.mark.pkcs11
NOW = datetime.now(UTC).replace(microsecond=0)


def _pem(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _no_errors(findings: list[Finding]) -> None:
    bad = [f for f in findings if f.severity <= Severity.ERROR]
    assert not bad, bad


def test_hierarchy_certificates_and_revocation_lists_on_a_token(backend: Pkcs11KeyBackend, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    hierarchy = create_hierarchy(backend, settings, NOW)
    root = _pem(tmp_path / "root.pem", hierarchy.root.public_bytes(Encoding.PEM))
    dca = _pem(tmp_path / "dca.pem", hierarchy.device_ca.public_bytes(Encoding.PEM))
    oca = _pem(tmp_path / "oca.pem", hierarchy.organisation_ca.public_bytes(Encoding.PEM))

    factory = DeviceCertificateFactory(hierarchy.device_ca, backend.signer(DEVICE_CA_LABEL), settings)
    device_der = factory.issue(check_device_csr(make_device_csr(bytes.fromhex("00db123456789001"), Usage.KA)), NOW).der
    device = _pem(tmp_path / "device.der", device_der)
    org = build_organisation(
        check_organisation_csr(make_organisation_csr(bytes.fromhex("90b3d51f30010000"), RemotePartyRole.SUPPLIER,
                                                     Usage.DS, "SUPPLIER")),
        hierarchy.organisation_ca, backend.signer(ORGANISATION_CA_LABEL), settings, NOW,
    )
    org_pem = _pem(tmp_path / "org.pem", org.public_bytes(Encoding.PEM))
    _no_errors(pkilint_findings(org.public_bytes(Encoding.DER)))

    subprocess.run(["openssl", "x509", "-inform", "DER", "-in", str(device), "-out", str(tmp_path / "device.pem")],
                   check=True)
    for leaf, ca in ((tmp_path / "device.pem", dca), (org_pem, oca)):
        check = subprocess.run(["openssl", "verify", "-CAfile", str(root), "-untrusted", str(ca), str(leaf)],
                               capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr

    crl = build_crl(hierarchy.organisation_ca, backend.signer(ORGANISATION_CA_LABEL),
                    [(org.serial_number, NOW, 1)], 1, NOW, NOW + timedelta(hours=24))
    arl = build_crl(hierarchy.root, backend.signer(ROOT_LABEL), [], 1, NOW, NOW + timedelta(days=30))
    _no_errors(crl_findings(crl.public_bytes(Encoding.DER), "CRL"))
    _no_errors(crl_findings(arl.public_bytes(Encoding.DER), "ARL"))
    crl_pem = _pem(tmp_path / "oca.crl", crl.public_bytes(Encoding.PEM))
    checked = subprocess.run(["openssl", "crl", "-in", str(crl_pem), "-CAfile", str(oca), "-noout", "-verify"],
                             capture_output=True, text=True)
    assert checked.returncode == 0 and "verify OK" in checked.stdout + checked.stderr
    revoked = subprocess.run(
        ["openssl", "verify", "-crl_check", "-CAfile", str(root), "-untrusted", str(oca), "-CRLfile", str(crl_pem),
         str(org_pem)], capture_output=True, text=True)
    assert revoked.returncode != 0 and "revoked" in revoked.stdout + revoked.stderr
    assert isinstance(hierarchy.root.public_key(), ec.EllipticCurvePublicKey)
