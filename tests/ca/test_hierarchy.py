"""The key ceremony: three labelled keys, a consistent hierarchy, and no second ceremony."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from smki.ca.hierarchy import DEVICE_CA_LABEL, ORGANISATION_CA_LABEL, ROOT_LABEL, create_hierarchy
from smki.config import Settings
from smki.errors import SmkiError
from smki.keys.file import FileKeyBackend
from tests.ca.conftest import NOW, FileCA, openssl


def _point(key: object) -> bytes:
    return key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)  # type: ignore[attr-defined, no-any-return]


def test_hierarchy_keys_and_certificates_belong_together(file_ca: FileCA) -> None:
    h, backend = file_ca.hierarchy, file_ca.backend
    for label, cert in (
        (ROOT_LABEL, h.root),
        (ORGANISATION_CA_LABEL, h.organisation_ca),
        (DEVICE_CA_LABEL, h.device_ca),
    ):
        assert backend.exists(label)
        assert _point(backend.signer(label).public_key()) == _point(cert.public_key())
    assert h.organisation_ca.issuer == h.device_ca.issuer == h.root.subject
    assert len({h.root.serial_number, h.organisation_ca.serial_number, h.device_ca.serial_number}) == 3
    for name in ("oca.pem", "dca.pem"):
        result = openssl("verify", "-CAfile", file_ca.directory / "root.pem", file_ca.directory / name)
        assert result.returncode == 0, result.stderr


def test_second_ceremony_is_refused(file_ca: FileCA) -> None:
    with pytest.raises(SmkiError) as err:
        create_hierarchy(file_ca.backend, file_ca.settings, NOW)
    assert err.value.code == "key.exists"


def test_configured_names_and_policies_are_used(tmp_path: Path) -> None:
    from dataclasses import replace

    settings = replace(
        Settings(),
        root_name="Prod Root",
        organisation_ca_name="Z9",
        device_ca_name="E999",
        organisation_policy_oid="1.2.3.1",
        device_policy_oid="1.2.3.2",
    )
    h = create_hierarchy(FileKeyBackend(tmp_path / "keys", b"0123456789"), settings, NOW)
    assert h.root.subject.rfc4514_string() == "CN=Prod Root,OU=00"
    assert h.organisation_ca.subject.rfc4514_string() == "CN=Z9,OU=07"
    assert h.device_ca.subject.rfc4514_string() == "CN=E999"
    assert (
        "1.2.3.2"
        in openssl("x509", "-noout", "-text", input=h.device_ca.public_bytes(Encoding.PEM)).stdout.decode()
    )
