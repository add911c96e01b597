"""Decoding and checking PKCS#10 Certificate Signing Requests (spec §3.2, §4.4).

A CSR is hostile input: it arrives from a subscriber's systems, often by the hundred thousand
overnight (spec §3.3: 375,000 batched CSRs between 20:00 and 08:00). So this module:

* accepts exactly the text forms the Portal and web services take (§3.2) and nothing else;
* parses with ``cryptography`` (strict DER) and re-walks the few raw bytes whose encoding matters
  (the signature AlgorithmIdentifier, the SubjectPublicKeyInfo, the attribute list, the
  hardwareModuleName), because ``cryptography`` normalises them away: a compressed point, for
  instance, loads as an ordinary P-256 key;
* returns only what the CA needs (:mod:`smki.ca.requests`); the CA builds every certificate from the
  profile and never copies a CSR extension;
* refuses with :class:`~smki.errors.SmkiError` and one of the stable codes in :data:`ERROR_CODES`.
  Nothing else escapes, whatever the bytes.

Cost matters: ``decode_csr_text`` + ``check_device_csr`` run once per CSR of every batch, so the
checks are ordered cheapest first and the common path (a well-formed P-256 CSR) does one
``cryptography`` parse, one point decode and one ECDSA verification.
"""

from __future__ import annotations

import binascii
import hashlib
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.x509.oid import ExtensionOID

from smki.ca.keyid import P256_SPKI_PREFIX
from smki.ca.oids import HARDWARE_MODULE_NAME
from smki.ca.p256_verify import p256_signature_valid
from smki.ca.requests import DeviceRequest, OrganisationRequest
from smki.config import DEFAULT_HW_TYPES
from smki.domain import ROLE_USAGES, RemotePartyRole, Usage
from smki.errors import SmkiError

#: Largest DER CSR accepted. A P-256 Device CSR is about 280 bytes; anything near this is not one.
MAX_CSR_BYTES = 8192
#: Largest text accepted before decoding: base64 of MAX_CSR_BYTES wrapped at 64 columns with CRLF,
#: plus PEM armour and some surrounding whitespace. Checked first, so a huge upload costs nothing.
MAX_CSR_TEXT_BYTES = 4 * ((MAX_CSR_BYTES + 2) // 3) * 66 // 64 + 256

#: Every refusal code this module raises → one line saying what it means (docs/csr-errors.md, API).
ERROR_CODES: dict[str, str] = {
    "csr.malformed": "not a PKCS#10 CSR in an accepted text form, or not strict DER",
    "csr.too-large": f"the CSR is larger than {MAX_CSR_BYTES} bytes (DER) or its text is too long",
    "csr.signature-algorithm": "the CSR is not signed with ecdsa-with-SHA256 (no parameters)",
    "csr.key-not-p256": "the public key is not an EC key on the named curve P-256 (prime256v1)",
    "csr.compressed-point": "the P-256 public key is a compressed point; the profile needs uncompressed",
    "csr.key-invalid": "the P-256 public key is not a valid uncompressed point on the curve",
    "csr.bad-signature": "the CSR's self-signature does not verify: no proof of possession of the key",
    "csr.unexpected-attribute": "the CSR carries an attribute other than one extensionRequest",
    "csr.unexpected-extension": "the CSR requests an extension the profile does not allow",
    "csr.key-usage-ambiguous": "keyUsage is missing or is not exactly digitalSignature or keyAgreement",
    "csr.subject-not-empty": "a Device CSR must have an empty subject",
    "csr.device-id-missing": "a Device CSR must request a subjectAltName with a hardwareModuleName",
    "csr.device-id-invalid": (
        "the subjectAltName is not exactly one hardwareModuleName whose hwSerialNum is 8 octets"
    ),
    "csr.hw-type": "the hardwareModuleName's hwType is not one this deployment accepts (spec §7.4)",
    "csr.subject-invalid": (
        "an Organisation CSR subject may hold only single-valued CN, OU and x500UniqueIdentifier"
    ),
    "csr.role-invalid": "OU is missing, not two hex digits, not a known Remote Party Role, or is 00 (root)",
    "csr.entity-id-invalid": "x500UniqueIdentifier is missing or not a BIT STRING of exactly 64 bits",
    "csr.role-usage": "the Remote Party Role does not have the requested key usage (spec §7.3)",
}

_SHOWN = 40  # never echo more than this many characters of input in a message


def _shown(text: str) -> str:
    return repr(text if len(text) <= _SHOWN else text[:_SHOWN] + "…")


def _fail(code: str, message: str) -> SmkiError:
    assert code in ERROR_CODES, code
    return SmkiError(code, message)


# --------------------------------------------------------------------------------------------
# Text forms (spec §3.2)

_PEM_LABELS = (b"CERTIFICATE REQUEST", b"NEW CERTIFICATE REQUEST")
#: The PEM nearly every batch CSR arrives as (OpenSSL's: LF, 64 columns): checked with one match
#: instead of line by line. Anything else takes the line-by-line path, which decides as before.
_PLAIN_PEM = re.compile(
    rb"\s*-----BEGIN CERTIFICATE REQUEST-----\n((?:[A-Za-z0-9+/]{64}\n)*[A-Za-z0-9+/=]{1,64})\n"
    rb"-----END CERTIFICATE REQUEST-----\s*"
)
_BASE64_LINE = re.compile(rb"[A-Za-z0-9+/=]*")
_WRAP_WIDTHS = (64, 76)


def decode_csr_text(data: bytes) -> bytes:
    """Return the DER of a CSR given in one of the accepted text forms (spec §3.2).

    Accepted: raw DER (first byte 0x30, taken as is); PEM with a ``CERTIFICATE REQUEST`` or
    ``NEW CERTIFICATE REQUEST`` label; the same base64 body without the armour; base64 on one line
    or wrapped at 64 or 76 columns with ``\\n`` or ``\\r\\n``. Whitespace around the text is ignored;
    anything else (other labels, PEM headers, text around the armour, ragged lines, stray
    characters) is ``csr.malformed``, so what the Portal accepts is exactly what is documented.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise _fail("csr.malformed", f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > MAX_CSR_TEXT_BYTES:
        raise _fail("csr.too-large", f"{len(data)} bytes of input; the limit is {MAX_CSR_TEXT_BYTES}")
    if data[:1] == b"\x30":
        # Raw DER: taken byte for byte (stripping could eat a final 0x20 or 0x0a of the signature).
        if len(data) > MAX_CSR_BYTES:
            raise _fail("csr.too-large", f"{len(data)} bytes of DER; the limit is {MAX_CSR_BYTES}")
        return data
    der = _openssl_pem_der(data)
    if der is not None:
        return der
    plain = _PLAIN_PEM.fullmatch(data)
    if plain is not None:
        return _base64_der(plain[1].replace(b"\n", b""))
    text = data.strip()
    if not text:
        raise _fail("csr.malformed", "empty input")
    lines = text.split(b"\n")
    if lines[0].startswith(b"-----"):
        lines = _unarmour(lines)
    lines = [line[:-1] if line.endswith(b"\r") else line for line in lines]
    if len(lines) > 1:
        width = len(lines[0])
        if width not in _WRAP_WIDTHS:
            raise _fail("csr.malformed", f"base64 lines are {width} wide; use one line, or 64 or 76 columns")
        for line in lines[1:-1]:
            if len(line) != width:
                raise _fail("csr.malformed", f"base64 lines must all be {width} wide but the last")
        if not 0 < len(lines[-1]) <= width:
            raise _fail("csr.malformed", f"the last base64 line must hold 1 to {width} characters")
    body = b"".join(lines)
    if not _BASE64_LINE.fullmatch(body):
        raise _fail("csr.malformed", "not PEM, base64 or DER (unexpected characters)")
    return _base64_der(body)


_OPENSSL_PEM_BEGIN = b"-----BEGIN CERTIFICATE REQUEST-----\n"
_OPENSSL_PEM_END = b"\n-----END CERTIFICATE REQUEST-----\n"
_OPENSSL_PEM_BODY = slice(len(_OPENSSL_PEM_BEGIN), -len(_OPENSSL_PEM_END))
_NEWLINES = b"\n" * (MAX_CSR_TEXT_BYTES // 65 + 1)


def _openssl_pem_der(data: bytes) -> bytes | None:
    """The DER in exactly what OpenSSL and ``cryptography`` write — the armour on lines of their
    own, base64 in 64 columns, ``\\n``, one newline at the end — else None.

    It answers only texts ``_PLAIN_PEM`` matches, and answers them as that path does (the same
    base64 body, decoded and checked by the same code), with a few whole-buffer operations rather
    than the pattern's character by character; a character outside base64 is left to strict
    base64 decoding to find, and such a text to the general path to refuse in its own words. It
    saves about a microsecond per CSR of every batch (``tests/ca/test_csr_text.py`` checks that
    it agrees with ``_PLAIN_PEM``).
    """
    if not (data.startswith(_OPENSSL_PEM_BEGIN) and data.endswith(_OPENSSL_PEM_END)):
        return None
    text = data[_OPENSSL_PEM_BODY]  # empty if the two overlap
    full_lines, last = divmod(len(text), 65)  # 64 characters and a newline each, then 1 to 64
    if not last or text[64::65] != _NEWLINES[:full_lines]:
        return None
    body = text.replace(b"\n", b"")
    if len(body) != len(text) - full_lines or body.find(b"=", 0, 64 * full_lines) >= 0:
        return None  # a newline elsewhere, or padding before the last line
    try:
        der = binascii.a2b_base64(body, strict_mode=True)  # refuses any character outside base64
    except binascii.Error:
        return None  # maybe not base64 at all: the general path says which
    return der if len(der) <= MAX_CSR_BYTES and der[:1] == b"\x30" else _checked_der(der)


def _base64_der(body: bytes) -> bytes:
    """The DER of a CSR's base64 body (only base64 characters, lines already joined)."""
    try:
        der = binascii.a2b_base64(body, strict_mode=True)
    except binascii.Error:
        raise _fail("csr.malformed", "invalid base64 (bad length or padding)") from None
    return _checked_der(der)


def _checked_der(der: bytes) -> bytes:
    """The DER decoded from base64, refused if it cannot be a CSR at a glance."""
    if len(der) > MAX_CSR_BYTES:
        raise _fail("csr.too-large", f"{len(der)} bytes of DER; the limit is {MAX_CSR_BYTES}")
    if der[:1] != b"\x30":
        raise _fail("csr.malformed", "the base64 does not decode to a DER SEQUENCE")
    return der


def _unarmour(lines: list[bytes]) -> list[bytes]:
    """The body lines between a CSR PEM's BEGIN and END lines (no headers, nothing around)."""
    first = lines[0].rstrip(b"\r")
    last = lines[-1].rstrip(b"\r")
    for label in _PEM_LABELS:
        if first == b"-----BEGIN " + label + b"-----":
            if len(lines) < 3 or last != b"-----END " + label + b"-----":
                raise _fail("csr.malformed", f"PEM without a matching END {label.decode()} line")
            return lines[1:-1]
    raise _fail("csr.malformed", "PEM label must be CERTIFICATE REQUEST or NEW CERTIFICATE REQUEST")


# --------------------------------------------------------------------------------------------
# A tiny strict DER reader: just enough to walk the few structures cryptography normalises.


class _DerError(Exception):
    """Raised by the reader; always turned into an SmkiError by its caller."""


def _tlv(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, value start, value end) of the DER TLV at ``pos``; strict: short tags, minimal lengths."""
    if pos + 2 > end:
        raise _DerError("truncated")
    tag = buf[pos]
    if tag & 0x1F == 0x1F:
        raise _DerError("multi-byte tag")
    first = buf[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 3 or pos + count > end or buf[pos] == 0:
            raise _DerError("bad length")
        length = int.from_bytes(buf[pos : pos + count], "big")
        if length < 0x80:
            raise _DerError("non-minimal length")
        pos += count
    if pos + length > end:
        raise _DerError("truncated")
    return tag, pos, pos + length


def _expect(buf: bytes, pos: int, end: int, tag: int) -> tuple[int, int]:
    got, start, stop = _tlv(buf, pos, end)
    if got != tag:
        raise _DerError(f"expected tag {tag:#04x}, got {got:#04x}")
    return start, stop


def _valid_oid_body(body: bytes) -> bool:
    # Non-empty, last octet ends a sub-identifier, no sub-identifier starts with a 0x80 pad octet.
    if not body or body[-1] & 0x80:
        return False
    previous = 0
    for octet in body:
        if octet == 0x80 and not previous & 0x80:
            return False
        previous = octet
    return True


# --------------------------------------------------------------------------------------------
# Fixed encodings

_ECDSA_WITH_SHA256 = bytes.fromhex("300a06082a8648ce3d040302")
#: SubjectPublicKeyInfo prefix of every P-256 key with a named curve and an uncompressed point.
_P256_SPKI_PREFIX = P256_SPKI_PREFIX
_P256_SPKI_LENGTH = len(_P256_SPKI_PREFIX) + 65
_EC_PUBLIC_KEY = bytes.fromhex("2a8648ce3d0201")
_PRIME256V1 = bytes.fromhex("2a8648ce3d030107")
_EXTENSION_REQUEST = bytes.fromhex("2a864886f70d01090e")
_CURVE = ec.SECP256R1()
#: The CSR's signature is checked over a SHA-256 digest taken with :mod:`hashlib`: the same check,
#: but OpenSSL hashing it itself costs a digest fetch and context per call (~8 µs of a ~80 µs
#: verification, once per CSR of every batch).
_ECDSA_PREHASHED_SHA256 = ec.ECDSA(Prehashed(hashes.SHA256()))

#: Extensions a CSR may request besides keyUsage (and subjectAltName on Device CSRs). They are
#: harmless because the CA never copies them: subjectKeyIdentifier (the CA computes its own, §4)
#: and basicConstraints with cA FALSE (OpenSSL's default ``v3_req`` adds it). A basicConstraints
#: asking for cA TRUE is refused.
_HARMLESS = frozenset({ExtensionOID.SUBJECT_KEY_IDENTIFIER, ExtensionOID.BASIC_CONSTRAINTS})


@dataclass(frozen=True, slots=True)
class _Checked:
    """What both CSR kinds share once structure, key and proof of possession are checked."""

    csr: x509.CertificateSigningRequest
    subject_der: bytes
    spki_der: bytes
    point: bytes
    #: The extensionRequest attribute's single value (the DER ``Extensions``), if there is one.
    extension_request: bytes | None
    #: Where the TBS (certificationRequestInfo TLV), the SPKI and the extensionRequest value start
    #: in the DER, and where the TBS ends: what a known shape is learnt from (``_learn_shape``).
    tbs_start: int
    tbs_end: int
    spki_start: int
    extension_request_start: int


def _check_common(der: bytes) -> _Checked:
    """Structure, signature algorithm, P-256 key and self-signature, in that (cost) order."""
    if not isinstance(der, bytes | bytearray | memoryview):
        raise _fail("csr.malformed", f"expected DER bytes, got {type(der).__name__}")
    der = bytes(der)
    if len(der) > MAX_CSR_BYTES:
        raise _fail("csr.too-large", f"{len(der)} bytes of DER; the limit is {MAX_CSR_BYTES}")
    try:
        csr = x509.load_der_x509_csr(der)
    except x509.InvalidVersion:
        raise _fail("csr.malformed", "CSR version must be v1 (0)") from None
    except ValueError:
        raise _fail("csr.malformed", "not a DER-encoded PKCS#10 CertificationRequest") from None
    try:
        # CertificationRequest ::= SEQUENCE { certificationRequestInfo, signatureAlgorithm, signature }
        start, end = _expect(der, 0, len(der), 0x30)
        if end != len(der):
            raise _DerError("trailing data")
        _, tbs_start, tbs_end = _tlv(der, start, end)
        tbs = der[start:tbs_end]
        _, _, alg_end = _tlv(der, tbs_end, end)
        algorithm = der[tbs_end:alg_end]
        sig_start, sig_end = _expect(der, alg_end, end, 0x03)
        # CertificationRequestInfo ::= SEQUENCE { version, subject, subjectPKInfo, [0] attributes }
        version_start, version_end = _expect(der, tbs_start, tbs_end, 0x02)
        _, _, subject_end = _tlv(der, version_end, tbs_end)
        _, _, spki_end = _tlv(der, subject_end, tbs_end)
        attributes_start, attributes_end = _expect(der, spki_end, tbs_end, 0xA0)
        if attributes_end != tbs_end:
            raise _DerError("data after the attributes")
    except _DerError as error:
        raise _fail("csr.malformed", f"bad CSR structure ({error})") from None
    if der[version_start:version_end] != b"\x00":
        raise _fail("csr.malformed", "CSR version must be v1 (0)")
    # The key first: an RSA CSR is refused as "RSA key", the cause, not as "RSA signature".
    spki = der[subject_end:spki_end]
    point = _p256_point(csr, spki)
    if algorithm != _ECDSA_WITH_SHA256:
        raise _fail(
            "csr.signature-algorithm",
            f"signed with {csr.signature_algorithm_oid.dotted_string[:_SHOWN]}; "
            "the CSR must be signed with ecdsa-with-SHA256",
        )
    try:
        public_key = ec.EllipticCurvePublicKey.from_encoded_point(_CURVE, point)
    except ValueError:
        raise _fail("csr.key-invalid", "the public key is not a point on P-256") from None
    if der[sig_start] != 0:
        raise _fail("csr.bad-signature", "the signature BIT STRING has unused bits")
    try:
        public_key.verify(der[sig_start + 1 : sig_end], hashlib.sha256(tbs).digest(), _ECDSA_PREHASHED_SHA256)
    except InvalidSignature:
        raise _fail("csr.bad-signature", "the CSR's signature does not verify with its own key") from None
    extension_request, extension_request_start = _check_attributes(der, attributes_start, attributes_end)
    return _Checked(csr, der[version_end:subject_end], spki, point, extension_request,
                    start, tbs_end, subject_end, extension_request_start)


def _p256_point(csr: x509.CertificateSigningRequest, spki: bytes) -> bytes:
    """The 65-byte uncompressed point of a named-curve P-256 SPKI, or the precise refusal."""
    if len(spki) == _P256_SPKI_LENGTH and spki.startswith(_P256_SPKI_PREFIX) and spki[26] == 0x04:
        return spki[len(_P256_SPKI_PREFIX) :]
    # Not the one accepted encoding: work out what it is, from the raw bytes first.
    try:
        start, end = _expect(spki, 0, len(spki), 0x30)
        alg_start, alg_end = _expect(spki, start, end, 0x30)
        oid_start, oid_end = _expect(spki, alg_start, alg_end, 0x06)
        is_ec = spki[oid_start:oid_end] == _EC_PUBLIC_KEY
        named_p256 = is_ec and spki[oid_end:alg_end] == b"\x06\x08" + _PRIME256V1
        named_curve = is_ec and spki[oid_end : oid_end + 1] == b"\x06"
        key_start, key_end = _expect(spki, alg_end, end, 0x03)
        key = spki[key_start:key_end]
    except _DerError:
        raise _fail("csr.malformed", "bad SubjectPublicKeyInfo") from None
    if named_p256:
        if len(key) == 34 and key[0] == 0 and key[1] in (2, 3):
            raise _fail("csr.compressed-point", "the P-256 public key is compressed; send it uncompressed")
        raise _fail("csr.key-invalid", "the P-256 public key is not a 65-byte uncompressed point")
    if is_ec and not named_curve:
        raise _fail(
            "csr.key-not-p256", "the EC key has explicit curve parameters; use the named curve prime256v1"
        )
    described = _describe_key(csr, is_ec, spki[oid_start:oid_end])
    raise _fail("csr.key-not-p256", f"the public key is {described}; only EC P-256 is accepted")


def _describe_key(csr: x509.CertificateSigningRequest, is_ec: bool, algorithm: bytes) -> str:
    try:
        key = csr.public_key()
    except (ValueError, UnsupportedAlgorithm):
        key = None
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA-{key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC on curve {key.curve.name[:_SHOWN]}"
    if is_ec:
        return "EC without the named curve prime256v1"
    if key is not None:
        return type(key).__name__.removesuffix("PublicKey")[:_SHOWN]
    return f"of algorithm {_oid_text(algorithm)[:_SHOWN]}"


def _oid_text(body: bytes) -> str:
    """Dotted text of an OID's content octets, for messages only."""
    if not _valid_oid_body(body):
        return "(invalid OID)"
    arcs: list[int] = []
    value = 0
    for octet in body:
        value = (value << 7) | (octet & 0x7F)
        if not octet & 0x80:
            arcs.append(value)
            value = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(str(arc) for arc in [first, arcs[0] - 40 * first, *arcs[1:]])


def _check_attributes(der: bytes, start: int, end: int) -> tuple[bytes | None, int]:
    """Allow at most one attribute, extensionRequest, with exactly one value; return that value
    and where it starts in ``der`` (-1 when there is none)."""
    seen: bytes | None = None
    seen_at = -1
    pos = start
    try:
        while pos < end:
            attr_start, attr_end = _expect(der, pos, end, 0x30)
            oid_start, oid_end = _expect(der, attr_start, attr_end, 0x06)
            if der[oid_start:oid_end] != _EXTENSION_REQUEST:
                raise _fail("csr.unexpected-attribute", "only the extensionRequest attribute is accepted")
            if seen:
                raise _fail("csr.unexpected-attribute", "more than one extensionRequest attribute")
            values_start, values_end = _expect(der, oid_end, attr_end, 0x31)
            _, _, value_end = _tlv(der, values_start, values_end)
            if value_end != values_end or values_end != attr_end:
                raise _fail("csr.unexpected-attribute", "extensionRequest must have exactly one value")
            seen, seen_at = der[values_start:value_end], values_start
            pos = attr_end
    except _DerError as error:
        raise _fail("csr.malformed", f"bad CSR attributes ({error})") from None
    return seen, seen_at


def _extensions(checked: _Checked) -> x509.Extensions:
    if checked.extension_request is None:
        return x509.Extensions([])
    try:
        return checked.csr.extensions
    except x509.DuplicateExtension as error:
        raise _fail("csr.malformed", f"extension {error.oid.dotted_string[:_SHOWN]} is repeated") from None
    except (ValueError, x509.UnsupportedGeneralNameType):
        raise _fail("csr.malformed", "the requested extensions are not valid DER") from None


def _check_extensions(extensions: x509.Extensions, allowed: frozenset[x509.ObjectIdentifier]) -> None:
    """Refuse any requested extension that is neither ``allowed`` nor harmless."""
    for extension in extensions:
        oid = extension.oid
        if oid in allowed:
            continue
        if oid == ExtensionOID.BASIC_CONSTRAINTS:
            value = extension.value
            if isinstance(value, x509.BasicConstraints) and value.ca:
                raise _fail("csr.unexpected-extension", "basicConstraints asks for a CA certificate")
        elif oid not in _HARMLESS:
            raise _fail(
                "csr.unexpected-extension", f"extension {oid.dotted_string[:_SHOWN]} may not be requested"
            )


def _requested_usage(extensions: x509.Extensions) -> Usage:
    """The single usage keyUsage asks for (DS or KA)."""
    try:
        value = extensions.get_extension_for_oid(ExtensionOID.KEY_USAGE).value
    except x509.ExtensionNotFound:
        raise _fail(
            "csr.key-usage-ambiguous", "no keyUsage requested; ask for digitalSignature or keyAgreement"
        ) from None
    return _usage(value)


#: cryptography's KeyUsage attribute → the RFC 5280 name used in messages.
_KEY_USAGE_FLAGS = {
    "digital_signature": "digitalSignature",
    "content_commitment": "nonRepudiation",
    "key_encipherment": "keyEncipherment",
    "data_encipherment": "dataEncipherment",
    "key_agreement": "keyAgreement",
    "key_cert_sign": "keyCertSign",
    "crl_sign": "cRLSign",
    "encipher_only": "encipherOnly",
    "decipher_only": "decipherOnly",
}


def _usage(value: x509.ExtensionType) -> Usage:
    if not isinstance(value, x509.KeyUsage):  # pragma: no cover - cryptography always decodes it
        raise _fail("csr.key-usage-ambiguous", "keyUsage could not be read")
    # encipher_only/decipher_only raise unless keyAgreement is set, so read them only then.
    readable = list(_KEY_USAGE_FLAGS)[: 9 if value.key_agreement else 7]
    flags = [_KEY_USAGE_FLAGS[flag] for flag in readable if getattr(value, flag)]
    if flags == ["digitalSignature"]:
        return Usage.DS
    if flags == ["keyAgreement"]:
        return Usage.KA
    asked = ", ".join(flags) or "nothing"
    raise _fail(
        "csr.key-usage-ambiguous",
        f"keyUsage asks for {asked}; ask for exactly digitalSignature or keyAgreement",
    )


# --------------------------------------------------------------------------------------------
# Device CSRs (spec §4.1, §4.4)

_DEVICE_EXTENSIONS = frozenset({ExtensionOID.KEY_USAGE, ExtensionOID.SUBJECT_ALTERNATIVE_NAME})
_ORGANISATION_EXTENSIONS = frozenset({ExtensionOID.KEY_USAGE})


def check_device_csr(der: bytes, accepted_hw_types: Collection[str] = DEFAULT_HW_TYPES) -> DeviceRequest:
    """Check a Device CSR and return what the CA needs: Device ID, usage, hwType and key.

    Requirements (spec §4.4): strict DER PKCS#10 v1, signed with ecdsa-with-SHA256 by its own P-256
    key (uncompressed point), empty subject, and an extensionRequest with exactly one keyUsage
    (digitalSignature or keyAgreement) and a subjectAltName holding exactly one hardwareModuleName
    (RFC 4108) whose hwSerialNum is the 8-octet EUI-64 and whose hwType is one of
    ``accepted_hw_types`` (the deployment's ``hw_type_oids``, spec §7.4), which the certificate
    then carries. Any other requested extension is refused (see ``_HARMLESS``).
    """
    request = _device_request(der)
    if request.hw_type not in accepted_hw_types:
        raise _fail("csr.hw-type", f"hwType {request.hw_type[:_SHOWN]} is not accepted here; "
                    f"accepted: {', '.join(accepted_hw_types)[:120]}")
    return request


def _device_request(der: bytes) -> DeviceRequest:
    """The checks of :func:`check_device_csr` but the hwType's acceptance."""
    known = _known_shape_request(der)
    if known is not None:
        return known
    checked = _check_common(der)
    if checked.subject_der != b"\x30\x00":
        raise _fail("csr.subject-not-empty", "a Device CSR must have an empty subject")
    plain = _plain_device_extensions(checked.extension_request)
    if plain is not None:
        device_id, usage, device_at, usage_at, hw_type_body = plain
        hw_type = _oid_text(hw_type_body)
        _learn_shape(der, checked, device_at, usage_at, hw_type)
        return DeviceRequest(device_id, usage, checked.spki_der, checked.point, hw_type, point_checked=True)
    extensions = _extensions(checked)
    _check_extensions(extensions, _DEVICE_EXTENSIONS)
    try:
        san = extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    except x509.ExtensionNotFound:
        raise _fail("csr.device-id-missing", "no subjectAltName hardwareModuleName (Device ID)") from None
    assert isinstance(san, x509.SubjectAlternativeName)
    names = list(san)
    if not any(isinstance(n, x509.OtherName) and n.type_id == HARDWARE_MODULE_NAME for n in names):
        raise _fail("csr.device-id-missing", "the subjectAltName holds no hardwareModuleName (Device ID)")
    if len(names) != 1:
        raise _fail(
            "csr.device-id-invalid",
            f"the subjectAltName holds {len(names)} names; it must hold one hardwareModuleName only",
        )
    name = names[0]
    assert isinstance(name, x509.OtherName)
    hw_type_body, device_id = _hardware_module_name(name.value)
    return DeviceRequest(device_id, _requested_usage(extensions), checked.spki_der, checked.point,
                         _oid_text(hw_type_body), point_checked=True)


#: keyUsage values (the extnValue octets) a plain Device CSR asks for: exactly one minimal BIT STRING.
_PLAIN_KEY_USAGE = {bytes.fromhex("03020780"): Usage.DS, bytes.fromhex("03020308"): Usage.KA}
_KEY_USAGE_OID = bytes.fromhex("551d0f")
_SUBJECT_ALT_NAME_OID = bytes.fromhex("551d11")
_HARDWARE_MODULE_NAME_OID = bytes.fromhex("2b06010505070804")
_CRITICAL = b"\x01\x01\xff"


def _plain_device_extensions(value: bytes | None) -> tuple[bytes, Usage, int, int, bytes] | None:
    """(Device ID, usage, where each is in ``value``, hwType OID content) when the requested
    extensions are the plain pair, else None. The usage's place is that of the keyUsage extnValue's
    4 octets.

    Nearly every Device CSR asks for exactly a keyUsage of digitalSignature or keyAgreement and a
    subjectAltName holding one hardwareModuleName, in either order, each critical or not. Reading
    those few bytes directly costs a fraction of having ``cryptography`` decode the extensions, and
    it runs for every CSR of every batch. Anything else — another extension, a second name, an
    unusual but valid encoding, a malformed one — returns None and the general path below decides,
    so this shortcut never changes a result (``tests/ca/test_csr_plain.py`` checks that it agrees).
    """
    if value is None:
        return None
    usage: Usage | None = None
    device: bytes | None = None
    hw_type = b""
    usage_at = device_at = -1
    try:
        start, end = _expect(value, 0, len(value), 0x30)
        if end != len(value):
            return None
        pos = start
        while pos < end:
            ext_start, ext_end = _expect(value, pos, end, 0x30)
            oid_start, oid_end = _expect(value, ext_start, ext_end, 0x06)
            at = oid_end + 3 if value[oid_end : oid_end + 3] == _CRITICAL else oid_end
            body_start, body_end = _expect(value, at, ext_end, 0x04)
            if body_end != ext_end:
                return None
            oid = value[oid_start:oid_end]
            if oid == _KEY_USAGE_OID and usage is None:
                usage = _PLAIN_KEY_USAGE.get(value[body_start:body_end])
                if usage is None:
                    return None
                usage_at = body_start
            elif oid == _SUBJECT_ALT_NAME_OID and device is None:
                names = _plain_hardware_module_name(value[body_start:body_end])
                if names is None:
                    return None
                hw_type, device = names
                device_at = body_end - len(device)
            else:
                return None
            pos = ext_end
    except _DerError:
        return None
    if usage is None or device is None:
        return None
    return device, usage, device_at, usage_at, hw_type


# --------------------------------------------------------------------------------------------
# The Device ID a CSR names, unchecked (the batch runner's 100-per-Device limit)


def peek_device_id(der: bytes) -> bytes | None:
    """The Device ID a CSR names, read without checking the CSR, or None if it cannot be read.

    The batch runner counts certificates per Device ID with this before any CSR is signed; the
    full check (:func:`check_device_csr`) still runs on every CSR and reports a bad one itself. It
    runs for every CSR of every batch in the single writer, so the plain CSR is read with the same
    walk as the full check (:func:`_plain_device_id`); anything else goes through
    ``cryptography``'s extension objects (:func:`_general_device_id`). Both give the same answer
    for every input (``tests/api/test_batch_jobs.py`` checks that on generated and mutated CSRs).
    """
    try:
        csr = x509.load_der_x509_csr(der)  # a CSR cryptography cannot load names no Device
    except (ValueError, x509.InvalidVersion):  # InvalidVersion is no ValueError
        return None
    device = _peek_shape_device_id(der)
    if device is None:
        device = _plain_device_id(der, learn=True)
    return device if device is not None else _general_device_id(csr)


def _plain_device_id(der: bytes, *, learn: bool = False) -> bytes | None:
    """hwSerialNum when the CSR's only attribute is an extensionRequest of exactly the plain pair
    (see :func:`_plain_device_extensions`), else None. With ``learn``, a CSR read this way becomes
    a shape of the peek's own (:func:`_peek_shape_device_id`)."""
    try:
        start, end = _expect(der, 0, len(der), 0x30)
        tbs_start, tbs_end = _expect(der, start, end, 0x30)
        _, _, version_end = _tlv(der, tbs_start, tbs_end)
        _, _, subject_end = _tlv(der, version_end, tbs_end)
        _, _, spki_end = _tlv(der, subject_end, tbs_end)
        attributes_start, attributes_end = _expect(der, spki_end, tbs_end, 0xA0)
        if end != len(der) or attributes_end != tbs_end:
            return None
        extension_request, request_at = _check_attributes(der, attributes_start, attributes_end)
    except (_DerError, SmkiError):
        return None
    plain = _plain_device_extensions(extension_request)
    if plain is None:
        return None
    if learn and der[subject_end : subject_end + len(_P256_SPKI_PREFIX)] == _P256_SPKI_PREFIX:
        global _PEEK_SHAPES
        pattern = _shape_pattern(der[start:tbs_end], [
            (subject_end + len(_P256_SPKI_PREFIX) + 1 - start, 64),
            (request_at + plain[2] - start, 8),
            (request_at + plain[3] - start, 4),
        ])
        if pattern is not None and pattern not in _PEEK_SHAPES:
            _PEEK_SHAPES = (pattern, *_PEEK_SHAPES[: _MAX_SHAPES - 1])
    return plain[0]


#: The peek's own shapes (the same holes as ``_SHAPES``, below), learnt from CSRs it read with the
#: plain walk. Kept apart because those CSRs were never checked: the full check must not trust them.
_PEEK_SHAPES: tuple[re.Pattern[bytes], ...] = ()


def _peek_shape_device_id(der: bytes) -> bytes | None:
    """The Device ID of a CSR whose TBS is one of the peek's shapes, else None.

    What :func:`_plain_device_id` reads depends on the TBS alone (it never looks past it), and a
    TBS equal to a learnt one outside the holes has the same structure: the point lies in the SPKI
    the walk skips, the Device ID is the hwSerialNum's content, and the keyUsage hole must hold one
    of the two plain values the walk accepts. So the walk would answer the Device ID in its hole;
    this answers it with one match instead of ~9 µs of walking (``tests/ca/test_csr_shapes.py``
    checks the peek against the walk on mutated CSRs of a learnt shape).
    """
    shapes = _PEEK_SHAPES
    if not shapes or type(der) is not bytes:
        return None
    try:
        start, end = _expect(der, 0, len(der), 0x30)
        _, tbs_end = _expect(der, start, end, 0x30)
    except _DerError:
        return None
    if end != len(der):
        return None
    tbs = der[start:tbs_end]
    for shape in shapes:
        match = shape.fullmatch(tbs)
        if match is not None:
            return match["device"] if match["usage"] in _PLAIN_KEY_USAGE else None
    return None


def _general_device_id(csr: x509.CertificateSigningRequest | bytes) -> bytes | None:
    """hwSerialNum of the first hardwareModuleName in the CSR's subjectAltName, through
    ``cryptography``; None when there is none or the extensions cannot be read."""
    try:
        if isinstance(csr, bytes):
            csr = x509.load_der_x509_csr(csr)
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.InvalidVersion, x509.ExtensionNotFound, x509.DuplicateExtension,
            x509.UnsupportedGeneralNameType):
        return None
    for name in san:
        if isinstance(name, x509.OtherName) and name.type_id == HARDWARE_MODULE_NAME:
            value = name.value
            if len(value) >= 10 and value[-10] == 0x04 and value[-9] == 8:
                return bytes(value[-8:])
    return None


# --------------------------------------------------------------------------------------------
# Known shapes: the plain Device CSR without walking it again.
#
# The CSRs of one batch come from one device type, and so differ only in the key (64 octets of the
# point), the Device ID (8 octets) and, for DS or KA, the keyUsage value (4 octets) — and in the
# signature, which is outside the TBS. Once a CSR has passed the full checks on the plain path, its
# TBS is remembered as a shape with those three holes. A later CSR whose TBS equals the shape
# outside the holes, whose keyUsage hole holds one of the two plain values and whose signature
# wrapper is the one accepted encoding, would pass every structural check exactly as the learnt
# one did: only its point (on the curve?) and its signature are left to check, and both are. Any
# mismatch or failure returns None and the full path decides — and reports — as before, so a shape
# never changes a result (``tests/ca/test_csr_shapes.py``). It saves the ~20 µs of Python that
# walking the DER costs per CSR, a sixth of a certificate's whole cost.


#: Most recently learnt first; a handful covers every device type of a night's batches. Each is
#: the learnt TBS as a pattern (its octets verbatim, the holes as named groups) with its hwType,
#: which lies in the verbatim part, and where the TBS ends in the CSR (the holes have fixed sizes,
#: and the TBS starts after the outer header's 4 octets, ``_CSR_HEADER``).
_SHAPES: tuple[tuple[re.Pattern[bytes], str, int], ...] = ()
_MAX_SHAPES = 8
_HOLES = {64: b"point", 8: b"device", 4: b"usage"}  # size → name (the sizes are distinct)


def _learn_shape(der: bytes, checked: _Checked, device_at: int, usage_at: int, hw_type: str) -> None:
    """Remember the TBS of a CSR that passed the plain path as a shape (see above)."""
    global _SHAPES
    if checked.extension_request_start < 0:
        return
    base = checked.tbs_start
    pattern = _shape_pattern(der[base : checked.tbs_end], [
        (checked.spki_start + len(_P256_SPKI_PREFIX) + 1 - base, 64),
        (checked.extension_request_start + device_at - base, 8),
        (checked.extension_request_start + usage_at - base, 4),
    ], _CSR_HEADER, _CSR_SIGNATURE)
    if pattern is None:
        return
    shape = (pattern, hw_type, 4 + checked.tbs_end - base)
    if shape not in _SHAPES:
        _SHAPES = (shape, *_SHAPES[: _MAX_SHAPES - 1])


#: What a known shape's pattern puts around its TBS, so that one match reads the whole CSR:
#: the outer SEQUENCE's header (the two-octet long form, minimal: a Device CSR is 256 octets or
#: more; the length itself is checked apart), and after the TBS the one AlgorithmIdentifier and
#: the signature BIT STRING, with a short length (checked apart) and no unused bits.
_CSR_HEADER = rb"\x30\x82[\x01-\xff]."
_CSR_SIGNATURE = re.escape(_ECDSA_WITH_SHA256) + rb"\x03[\x01-\x7f]\x00(?P<signature>.*)"
_BIT_STRING_LENGTH_AT = len(_ECDSA_WITH_SHA256) + 1  # after the TBS


def _shape_pattern(tbs: bytes, holes: list[tuple[int, int]], before: bytes = b"",
                   after: bytes = b"") -> re.Pattern[bytes] | None:
    """``tbs`` as a pattern: its octets verbatim, the holes (start, size) as named groups, between
    the patterns ``before`` and ``after``."""
    pattern = [before]
    position = 0
    for start, size in sorted(holes):
        if start < position:  # overlapping holes cannot happen in a plain CSR; never learn one
            return None
        pattern.append(re.escape(tbs[position:start]) + b"(?P<" + _HOLES[size] + b">.{%d})" % size)
        position = start + size
    pattern.append(re.escape(tbs[position:]))
    pattern.append(after)
    return re.compile(b"".join(pattern), re.DOTALL)


def _known_shape_request(der: bytes) -> DeviceRequest | None:
    """The request of a CSR of a known shape whose key and signature check out, else None."""
    known = _known_shape_fields(der)
    if known is None:
        return None
    device_id, usage, point, hw_type = known
    return DeviceRequest(device_id, usage, _P256_SPKI_PREFIX + point, point, hw_type, point_checked=True)


def _known_shape_fields(der: bytes) -> tuple[bytes, Usage, bytes, str] | None:
    """(Device ID, usage, point, hwType) of a CSR of a known shape whose key and signature check
    out, else None: what :func:`_known_shape_request` puts in its request.

    One match reads the whole CSR: a known shape's pattern holds the outer header and the
    signature's wrapper around the TBS (``_CSR_HEADER``, ``_CSR_SIGNATURE``), so only their two
    lengths are left to compare. That is exactly the strict reader's acceptance for such a CSR,
    with one pattern rather than a walk; anything else returns None and the full path decides
    (``tests/ca/test_csr_shapes.py``). It runs once per CSR of every batch.
    """
    shapes = _SHAPES
    if not shapes or type(der) is not bytes:
        return None
    size = len(der)
    if size > MAX_CSR_BYTES:
        return None
    for shape in shapes:
        match = shape[0].fullmatch(der)
        if match is not None:
            break
    else:
        return None
    _, hw_type, tbs_end = shape
    point_hole, usage_hole, device_id, signature = match.group("point", "usage", "device", "signature")
    if der[2] << 8 | der[3] != size - 4 or der[tbs_end + _BIT_STRING_LENGTH_AT] != len(signature) + 1:
        return None
    usage = _PLAIN_KEY_USAGE.get(usage_hole)
    if usage is None:
        return None
    point = b"\x04" + point_hole
    if not p256_signature_valid(point, signature, hashlib.sha256(der[4:tbs_end]).digest()):
        return None  # the full path refuses it, saying whether the key or the signature is at fault
    return device_id, usage, point, hw_type


def known_device_csr(data: bytes, accepted_hw_types: Collection[str]) -> tuple[bytes, Usage, bytes, str] | None:
    """``check_device_csr(decode_csr_text(data), accepted_hw_types)`` for nearly every CSR of a
    batch, without the request object: its (Device ID, usage, point, hwType); or None, when the
    text is not DER or OpenSSL's PEM, or the CSR is not of a known shape, or its signature or
    hwType is refused — and then those two functions decide, and refuse, exactly as they would
    have (they take the same path to the same answer for every input this one answers).

    The batch workers' checking pass calls this per CSR: a request object and the layers of calls
    around it cost about as much as the rest of its Python (``smki/services/device_issuance.py``).
    """
    if type(data) is not bytes or len(data) > MAX_CSR_TEXT_BYTES:
        return None
    if data[:1] != b"\x30":
        try:
            der = _openssl_pem_der(data)
        except SmkiError:
            return None
        if der is None:
            return None
        data = der
    known = _known_shape_fields(data)
    if known is None or known[3] not in accepted_hw_types:
        return None
    return known


def _plain_hardware_module_name(names: bytes) -> tuple[bytes, bytes] | None:
    """(hwType OID content, hwSerialNum) when ``names`` is GeneralNames with exactly one
    well-formed hardwareModuleName.

    ``SEQUENCE { [0] otherName { OID hardwareModuleName, [0] EXPLICIT SEQUENCE { OID hwType,
    OCTET STRING (8) hwSerialNum } } }``, every length in short form; None for anything else.
    """
    size = len(names)
    oid_length = size - 30
    if oid_length < 1 or size > 129:
        return None
    header = bytes((0x30, size - 2, 0xA0, size - 4, 0x06, 0x08)) + _HARDWARE_MODULE_NAME_OID + bytes(
        (0xA0, size - 16, 0x30, size - 18, 0x06, oid_length)
    )
    if not names.startswith(header) or names[20 + oid_length : 22 + oid_length] != b"\x04\x08":
        return None
    hw_type = names[20 : 20 + oid_length]
    if not _valid_oid_body(hw_type):
        return None
    return hw_type, names[-8:]


def _hardware_module_name(value: bytes) -> tuple[bytes, bytes]:
    """(hwType OID content, hwSerialNum) of ``HardwareModuleName ::= SEQUENCE { hwType OID,
    hwSerialNum OCTET STRING }``.

    ``cryptography`` gives the otherName value without its ``[0] EXPLICIT`` wrapper, i.e. the DER
    of the SEQUENCE. Read with the strict reader rather than pyasn1: this runs for every CSR.
    """
    try:
        start, end = _expect(value, 0, len(value), 0x30)
        if end != len(value):
            raise _DerError("trailing data")
        oid_start, oid_end = _expect(value, start, end, 0x06)
        serial_start, serial_end = _expect(value, oid_end, end, 0x04)
        if serial_end != end:
            raise _DerError("data after hwSerialNum")
    except _DerError as error:
        raise _fail("csr.device-id-invalid", f"hardwareModuleName is not RFC 4108 DER ({error})") from None
    if not _valid_oid_body(value[oid_start:oid_end]):
        raise _fail("csr.device-id-invalid", "hardwareModuleName hwType is not a valid OID")
    if serial_end - serial_start != 8:
        raise _fail(
            "csr.device-id-invalid",
            f"hwSerialNum is {serial_end - serial_start} octets; a Device ID is 8 (EUI-64)",
        )
    return value[oid_start:oid_end], value[serial_start:serial_end]


# --------------------------------------------------------------------------------------------
# Organisation CSRs (spec §4.2, §4.4)

#: RFC 5280 ub-common-name, counted as cryptography counts it (UTF-8 bytes), so that every CN
#: accepted here can be written into a certificate by cryptography without error.
_UB_COMMON_NAME = 64
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def check_organisation_csr(
    der: bytes, role_usages: Mapping[RemotePartyRole, frozenset[Usage]] | None = ROLE_USAGES
) -> OrganisationRequest:
    """Check an Organisation CSR and return entity, role, usage, optional CN and key.

    The subject holds, in any order and each at most once in its own single-valued RDN: an
    optional CN (1 to 64 bytes in UTF-8, no control characters), OU = the Remote Party Role as two
    hex digits (either case; ``00`` root is never requestable) and x500UniqueIdentifier
    (2.5.4.45) = a BIT STRING of exactly 64 bits, the Entity Identifier. CN and OU are UTF8String
    or PrintableString (RFC 5280 §4.1.2.6). The only extension requested is keyUsage (plus the
    harmless ones in ``_HARMLESS``). Whether the Party may use that entity and role is the RA's
    decision (spec §2.1 rule 8), not this module's. With ``role_usages`` (default: the DCC's table,
    spec §7.3) a usage the role does not have is refused (``csr.role-usage``); None skips that.
    """
    checked = _check_common(der)
    extensions = _extensions(checked)
    _check_extensions(extensions, _ORGANISATION_EXTENSIONS)
    usage = _requested_usage(extensions)
    common_name: str | None = None
    role_text: str | None = None
    entity: bytes | None = None
    for oid, tag, value in _subject_attributes(checked.subject_der):
        if oid == _CN:
            if common_name is not None:
                raise _fail("csr.subject-invalid", "the subject has more than one CN")
            common_name = _common_name(_directory_string(tag, value, "csr.subject-invalid", "CN"))
        elif oid == _OU:
            if role_text is not None:
                raise _fail("csr.role-invalid", "the subject has more than one OU (role)")
            role_text = _directory_string(tag, value, "csr.role-invalid", "OU")
        elif oid == _UID:
            if entity is not None:
                raise _fail("csr.entity-id-invalid", "the subject has more than one x500UniqueIdentifier")
            if tag != 0x03:
                raise _fail("csr.entity-id-invalid", "x500UniqueIdentifier must be a BIT STRING, not text")
            entity = value
        else:
            shown = _oid_text(oid)[:_SHOWN]
            raise _fail("csr.subject-invalid", f"subject attribute {shown} is not allowed")
    role = _role(role_text)
    entity_id = _entity_id(entity)
    if role_usages is not None and usage not in role_usages.get(role, frozenset()):
        allowed = " or ".join(sorted(role_usages.get(role, frozenset())))
        if not allowed:
            raise _fail("csr.role-usage", f"role {role.ou} may have no Organisation Certificates")
        raise _fail("csr.role-usage", f"role {role.ou} may have {allowed} Organisation Certificates, not {usage}")
    return OrganisationRequest(entity_id, role, usage, common_name, checked.spki_der, checked.point)


_CN = bytes.fromhex("550403")
_OU = bytes.fromhex("55040b")
_UID = bytes.fromhex("55042d")
_PRINTABLE = re.compile(r"[A-Za-z0-9 '()+,\-./:=?]*")


def _subject_attributes(subject: bytes) -> list[tuple[bytes, int, bytes]]:
    """(OID content, value tag, value content) of each single-valued RDN of a DER Name.

    Read with the strict reader rather than through ``cryptography``'s Name, which coerces values
    by type (and raises TypeError or warns on some hostile combinations).
    """
    attributes: list[tuple[bytes, int, bytes]] = []
    try:
        start, end = _expect(subject, 0, len(subject), 0x30)
        pos = start
        while pos < end:
            set_start, set_end = _expect(subject, pos, end, 0x31)
            atv_start, atv_end = _expect(subject, set_start, set_end, 0x30)
            if atv_end != set_end:
                raise _fail("csr.subject-invalid", "the subject has a multi-valued RDN")
            oid_start, oid_end = _expect(subject, atv_start, atv_end, 0x06)
            tag, value_start, value_end = _tlv(subject, oid_end, atv_end)
            if value_end != atv_end:
                raise _DerError("data after an attribute value")
            attributes.append((subject[oid_start:oid_end], tag, subject[value_start:value_end]))
            pos = set_end
    except _DerError as error:
        raise _fail("csr.malformed", f"bad subject ({error})") from None
    return attributes


def _directory_string(tag: int, value: bytes, code: str, what: str) -> str:
    """Text of a UTF8String or PrintableString; anything else is refused under ``code``."""
    if tag == 0x0C:
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise _fail(code, f"{what} is not valid UTF-8") from None
    if tag == 0x13:
        text = value.decode("latin-1")
        if _PRINTABLE.fullmatch(text):
            return text
        raise _fail(code, f"{what} has characters a PrintableString may not hold")
    raise _fail(code, f"{what} must be a UTF8String or PrintableString (tag {tag:#04x})")


def _common_name(value: str) -> str:
    if not 0 < len(value.encode()) <= _UB_COMMON_NAME:
        raise _fail("csr.subject-invalid", f"CN must be text of 1 to {_UB_COMMON_NAME} bytes in UTF-8")
    if _CONTROL.search(value):
        raise _fail("csr.subject-invalid", "CN must not contain control characters")
    return value


_TWO_HEX = re.compile(r"[0-9A-Fa-f]{2}")


def _role(value: str | None) -> RemotePartyRole:
    if value is None:
        raise _fail("csr.role-invalid", "no OU: the Remote Party Role is missing")
    if not _TWO_HEX.fullmatch(value):
        raise _fail("csr.role-invalid", f"OU {_shown(value)} is not a Remote Party Role in two hex digits")
    number = int(value, 16)
    try:
        role = RemotePartyRole(number)
    except ValueError:
        raise _fail("csr.role-invalid", f"OU {value!r} is not a known Remote Party Role") from None
    if role is RemotePartyRole.ROOT:
        raise _fail("csr.role-invalid", "OU 00 is the root role and cannot be requested")
    return role


def _entity_id(value: bytes | None) -> bytes:
    """The 8 octets of a BIT STRING's content: the unused-bits octet (0), then 64 bits."""
    if value is None:
        raise _fail("csr.entity-id-invalid", "no x500UniqueIdentifier: the Entity Identifier is missing")
    if not value or value[0] > 7 or (len(value) == 1 and value[0]):
        # Typically 8 octets written without the unused-bits octet: a malformed BIT STRING.
        raise _fail("csr.entity-id-invalid", "x500UniqueIdentifier is not a valid BIT STRING (unused bits)")
    if len(value) != 9 or value[0] != 0:
        bits = (len(value) - 1) * 8 - value[0]
        raise _fail("csr.entity-id-invalid", f"x500UniqueIdentifier has {bits} bits; it must have 64")
    return value[1:]
