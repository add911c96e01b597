"""Shared test material for the DCC XML codecs: real CSRs and certificates, an XSD validator.

The XSD validator is libxml2 (the reference implementation most XML toolchains use) called
through ctypes: neither lxml nor xmllint is installed, but the libxml2 shared library is. The
tests in this file check the validator itself, so a broken binding cannot make the schema tests
pass vacuously.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import datetime
import functools
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID, ObjectIdentifier

XSD_DIR = Path(__file__).resolve().parents[2] / "docs" / "xsd"
HW_MODULE_NAME = ObjectIdentifier("1.3.6.1.5.5.7.8.4")
HW_TYPE_DER = bytes.fromhex("060d2a863a0001848fb90f01020201")  # OID 1.2.826.0.1.8641679.1.2.2.1


@functools.cache
def _key(seed: int) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(0x5EED + seed, ec.SECP256R1())  # fixed keys: stable test material


def hardware_module_name(eui64: bytes) -> bytes:
    """DER HardwareModuleName (RFC 4108) for a Device ID."""
    body = HW_TYPE_DER + b"\x04\x08" + eui64
    return b"\x30" + bytes([len(body)]) + body


@functools.cache
def device_csr_der(eui64: bytes = bytes.fromhex("00db123456789001"), seed: int = 0) -> bytes:
    """A real Device CSR: empty subject, SAN hardwareModuleName, keyUsage digitalSignature."""
    key = _key(seed)
    san = x509.SubjectAlternativeName([x509.OtherName(HW_MODULE_NAME, hardware_module_name(eui64))])
    usage = x509.KeyUsage(True, False, False, False, False, False, False, False, False)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(san, critical=True)
        .add_extension(usage, critical=True)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.DER)


@functools.cache
def certificate_der(serial: int = 0x469AFEC2E7C0CAAEC8A400769B702BC8, seed: int = 1) -> bytes:
    """A real (self-signed, P-256) certificate to carry in responses."""
    key = _key(seed)
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "02")])
    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


def openssl(kind: str, der: bytes) -> str:
    """``openssl <kind> -inform DER -noout -text``: proves the bytes are what they claim."""
    done = subprocess.run(
        ["openssl", kind, "-inform", "DER", "-noout", "-text"], input=der, capture_output=True, check=True
    )
    return done.stdout.decode()


# --------------------------------------------------------------------------------------------
# libxml2 XSD validation through ctypes


class _XmlError(ctypes.Structure):
    # The head of libxml2's xmlError: enough to read the message.
    _fields_ = [
        ("domain", ctypes.c_int),
        ("code", ctypes.c_int),
        ("message", ctypes.c_char_p),
        ("level", ctypes.c_int),
        ("file", ctypes.c_char_p),
        ("line", ctypes.c_int),
    ]


_HANDLER = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.POINTER(_XmlError))


class Libxml2Schemas:
    """Validates documents against the XSDs in ``docs/xsd`` with libxml2."""

    def __init__(self) -> None:
        name = ctypes.util.find_library("xml2") or "libxml2.so.2"
        lib = ctypes.CDLL(name)
        vp, cp, ci = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
        signatures = {
            "xmlSchemaNewMemParserCtxt": (vp, [cp, ci]),
            "xmlSchemaSetParserStructuredErrors": (None, [vp, _HANDLER, vp]),
            "xmlSchemaParse": (vp, [vp]),
            "xmlSchemaFreeParserCtxt": (None, [vp]),
            "xmlSchemaNewValidCtxt": (vp, [vp]),
            "xmlSchemaSetValidStructuredErrors": (None, [vp, _HANDLER, vp]),
            "xmlSchemaValidateDoc": (ci, [vp, vp]),
            "xmlSchemaFreeValidCtxt": (None, [vp]),
            "xmlReadMemory": (vp, [cp, ci, cp, cp, ci]),
            "xmlFreeDoc": (None, [vp]),
        }
        for func, (restype, argtypes) in signatures.items():
            getattr(lib, func).restype = restype
            getattr(lib, func).argtypes = argtypes
        self.lib = lib
        self.errors: list[str] = []
        self._handler = _HANDLER(self._collect)
        self.schemas: dict[str, int] = {}

    def _collect(self, _user: int | None, error: ctypes._Pointer[_XmlError]) -> None:
        message = error.contents.message
        self.errors.append((message or b"?").decode(errors="replace").strip())

    def schema(self, xsd: str) -> int:
        if xsd not in self.schemas:
            text = (XSD_DIR / xsd).read_bytes()
            ctxt = self.lib.xmlSchemaNewMemParserCtxt(text, len(text))
            self.lib.xmlSchemaSetParserStructuredErrors(ctxt, self._handler, None)
            self.errors = []
            schema = self.lib.xmlSchemaParse(ctxt)
            self.lib.xmlSchemaFreeParserCtxt(ctxt)
            if not schema:
                raise AssertionError(f"{xsd} is not a valid schema: {self.errors}")
            self.schemas[xsd] = schema
        return self.schemas[xsd]

    def errors_for(self, xsd: str, document: bytes) -> list[str]:
        """Validation errors (empty when valid). Not-well-formed input is reported too."""
        schema = self.schema(xsd)
        self.errors = []
        nonet = 1 << 11
        doc = self.lib.xmlReadMemory(document, len(document), b"body.xml", None, nonet)
        if not doc:
            return self.errors or ["not well-formed"]
        ctxt = self.lib.xmlSchemaNewValidCtxt(schema)
        self.lib.xmlSchemaSetValidStructuredErrors(ctxt, self._handler, None)
        try:
            result = self.lib.xmlSchemaValidateDoc(ctxt, doc)
        finally:
            self.lib.xmlSchemaFreeValidCtxt(ctxt)
            self.lib.xmlFreeDoc(doc)
        if result != 0 and not self.errors:
            return [f"libxml2 returned {result}"]
        return list(self.errors) if result != 0 else []


@functools.cache
def libxml2_schemas() -> Libxml2Schemas | None:
    try:
        return Libxml2Schemas()
    except OSError:
        return None


def require_xsd() -> Libxml2Schemas:
    """The validator, or skip the test when no XSD validator exists on this machine."""
    schemas = libxml2_schemas()
    if schemas is None:
        pytest.skip("no XSD validator: lxml, xmllint and the libxml2 shared library are all missing")
    return schemas


@pytest.fixture
def xsd() -> Libxml2Schemas:
    return require_xsd()


def test_the_validator_accepts_a_valid_document_and_rejects_an_invalid_one(xsd: Libxml2Schemas) -> None:
    good = b"<CertificateDataRequest><CertificateSerial>0A</CertificateSerial></CertificateDataRequest>"
    bad = b"<CertificateDataRequest><CertificateSerial>XYZ</CertificateSerial></CertificateDataRequest>"
    assert xsd.errors_for("repository.xsd", good) == []
    errors = xsd.errors_for("repository.xsd", bad)
    assert errors and "CertificateSerial" in errors[0]
    assert xsd.errors_for("repository.xsd", b"<CertificateDataRequest>") != []


def test_every_schema_compiles(xsd: Libxml2Schemas) -> None:
    for path in sorted(XSD_DIR.glob("*.xsd")):
        assert xsd.schema(path.name)


def test_the_material_is_real() -> None:
    csr = x509.load_der_x509_csr(device_csr_der())
    assert csr.is_signature_valid
    assert "Certificate Request" in openssl("req", device_csr_der())
    assert x509.load_der_x509_certificate(certificate_der()).serial_number == 0x469AFEC2E7C0CAAEC8A400769B702BC8
