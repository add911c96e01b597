"""The fast Device Certificate factory: the hot path of batch issuance (spec §3.3, §5).

A Device Certificate differs from the next one only in its serial, notBefore, public key, SKI,
Device ID and keyUsage bit; everything else (issuer name, validity end, policies, AKI, hwType,
the extension headers) is constant for a given Device CA and configuration. Building each one
with ``cryptography``'s ``CertificateBuilder`` also signs it with a throw-away key and re-encodes
every field, which costs several times the real ECDSA signature.

So the factory derives a template *from the profile's own output*: it asks
``smki.ca.profiles.device_tbs`` for one prototype TBSCertificate per key usage, cuts it into its DER
pieces, checks that each variable field sits where expected, and afterwards only splices the
variable bytes between the constant ones. The profile is therefore written once (in
``profiles.py``), and the tests prove byte identity with ``build_device`` for random inputs.
No pkilint here: the profile is linted in the tests, not per certificate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from smki.ca.der import der_tlv, signed_structure
from smki.ca.keyid import key_identifier_from_point
from smki.ca.profiles import (
    P256_SPKI_PREFIX,
    device_tbs,
    normalise_time,
    random_serial,
    require_issuer_valid,
    require_signer,
)
from smki.ca.requests import DeviceRequest
from smki.config import Settings
from smki.domain import Usage
from smki.errors import SmkiError
from smki.keys.base import Signer

_MAX_SERIAL = 1 << 159  # 20 octets, RFC 5280 §4.1.2.2
_P256 = ec.SECP256R1()
#: What ``_pieces_for`` builds a placeholder TBS with: distinct octets, found where expected.
_PLACEHOLDER_DEVICE_ID = bytes.fromhex("a55aa55aa55aa55a")
_PLACEHOLDER_POINT = b"\x04" + bytes(range(1, 65))
#: A factory sees a notBefore at a time with a few (hwType, usage, serial length) each; a bound anyway.
_MAX_PIECES = 64
#: ``build``'s constant pieces: before the serial's octets (TBS header, version, serial header),
#: before the point, before the SKI, before the Device ID, after it.
_Pieces = tuple[bytes, bytes, bytes, bytes, bytes]


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    """One issued Device Certificate: its DER, serial and notBefore (what the store records)."""

    der: bytes
    serial: int
    not_before: datetime


def split_tlvs(data: bytes) -> list[bytes]:
    """Split concatenated DER TLVs (single-octet tags, definite lengths) into whole TLVs."""
    out: list[bytes] = []
    i = 0
    while i < len(data):
        first = data[i + 1]
        if first < 0x80:
            start, length = i + 2, first
        else:
            count = first & 0x7F
            start = i + 2 + count
            length = int.from_bytes(data[i + 2 : start], "big")
        end = start + length
        if end > len(data):
            raise ValueError("truncated DER")
        out.append(data[i:end])
        i = end
    return out


def tlv_content(tlv: bytes) -> bytes:
    """The value octets of one DER TLV."""
    first = tlv[1]
    return tlv[2:] if first < 0x80 else tlv[2 + (first & 0x7F) :]


def encode_time(moment: datetime) -> bytes:
    """RFC 5280 §4.1.2.5: UTCTime for 1950-2049, GeneralizedTime otherwise (as ``cryptography``)."""
    if 1950 <= moment.year < 2050:
        return b"\x17\x0d" + moment.strftime("%y%m%d%H%M%SZ").encode("ascii")
    return b"\x18\x0f" + f"{moment.year:04d}".encode("ascii") + moment.strftime("%m%d%H%M%SZ").encode("ascii")


def encode_serial(serial: int) -> bytes:
    """DER INTEGER of a positive serial (a leading zero octet only when the top bit is set)."""
    if not 0 < serial < _MAX_SERIAL:
        raise SmkiError("ca.bad-serial", "a certificate serial must be positive and at most 20 octets")
    return der_tlv(0x02, serial.to_bytes(serial.bit_length() // 8 + 1, "big"))


@dataclass(frozen=True, slots=True)
class _UsageTemplate:
    extensions_header: bytes  # [3] { SEQUENCE { — lengths are constant for a usage and hwType
    key_usage: bytes  # the whole keyUsage Extension


@dataclass(frozen=True, slots=True)
class _Template:
    """The constant pieces of every Device Certificate with one hwType (spec §7.4: the certificate
    carries the CSR's hwType, so the subjectAltName prefix, and the lengths around it, vary by it)."""

    version: bytes
    algorithm_issuer: bytes
    not_after: bytes
    subject: bytes
    ski_prefix: bytes
    san_prefix: bytes
    tail: bytes
    usages: dict[str, _UsageTemplate]


def _template(issuer: x509.Certificate, settings: Settings, hw_type: str) -> _Template:
    """Cut the profile's own prototype TBSCertificates (one per usage) for ``hw_type`` into pieces."""
    prototype_key = ec.generate_private_key(_P256).public_key()
    point = prototype_key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    spki = prototype_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    device_id = bytes.fromhex("a55aa55aa55aa55a")
    ski = key_identifier_from_point(point)
    prototype_now = normalise_time(datetime(2020, 1, 1))
    constant: tuple[bytes, bytes, bytes, bytes, bytes, bytes, bytes] | None = None
    usages: dict[str, _UsageTemplate] = {}
    for usage in Usage:
        request = DeviceRequest(device_id, usage, spki, point, hw_type)
        tbs = device_tbs(request, issuer, settings, prototype_now, 1)
        fields = split_tlvs(tlv_content(tbs))
        if len(fields) != 8:
            raise SmkiError("ca.template", "the Device profile's TBSCertificate has an unexpected shape")
        version, _serial, algorithm, issuer_name, validity, subject, spki_field, explicit = fields
        not_after = split_tlvs(tlv_content(validity))[1]
        extensions = split_tlvs(tlv_content(tlv_content(explicit)))
        if len(extensions) != 5 or spki_field != spki or spki[: -len(point)] != P256_SPKI_PREFIX:
            raise SmkiError("ca.template", "the Device profile's extensions have an unexpected shape")
        key_usage, ski_ext, san_ext, policies, aki = extensions
        if not (ski_ext.endswith(ski) and san_ext.endswith(device_id)):
            raise SmkiError(
                "ca.template", "the Device profile's SKI or subjectAltName is not where expected"
            )
        pieces = (
            version,
            algorithm + issuer_name,
            not_after,
            subject,
            ski_ext[: -len(ski)],
            san_ext[: -len(device_id)],
            policies + aki,
        )
        if constant is not None and pieces != constant:
            raise SmkiError("ca.template", "the DS and KA Device profiles differ beyond keyUsage")
        constant = pieces
        body_length = len(tlv_content(tlv_content(explicit)))
        header = der_tlv(0xA3, der_tlv(0x30, b"\x00" * body_length))[:-body_length]
        usages[usage] = _UsageTemplate(header, key_usage)
    assert constant is not None
    version, algorithm_issuer, not_after, subject, ski_prefix, san_prefix, tail = constant
    return _Template(version, algorithm_issuer, not_after, subject, ski_prefix, san_prefix, tail, usages)


class DeviceCertificateFactory:
    """Issues Device Certificates byte-identical to ``build_device``, by splicing a template.

    One template per hwType, made the first time a request carries it (a few milliseconds): the
    CSR checks have already refused any hwType the deployment does not accept (``csr.hw-type``).
    """

    def __init__(self, issuer: x509.Certificate, signer: Signer, settings: Settings) -> None:
        issuer_key = issuer.public_key()
        if not isinstance(issuer_key, ec.EllipticCurvePublicKey):
            raise SmkiError("ca.bad-key", "the Device CA key must be EC P-256")
        require_signer(signer, issuer_key, "Device CA")
        self._issuer = issuer
        self._signer = signer
        self._settings = settings
        #: The hwTypes a Device CSR may carry here (spec §7.4), for the CSR checks.
        self.accepted_hw_types = frozenset(settings.hw_type_oids)
        self._last_now: datetime | None = None
        self._last_moment = datetime.min
        self._last_not_before = b""
        #: (hwType, usage, serial octets) → the constant pieces of the TBS between its variable
        #: fields, for the current notBefore (see ``build``); emptied when the notBefore changes.
        self._pieces: dict[tuple[str, str, int], _Pieces] = {}
        self._templates: dict[str, _Template] = {
            hw_type: _template(issuer, settings, hw_type) for hw_type in settings.hw_type_oids[:1]
        }

    def _template_for(self, hw_type: str) -> _Template:
        template = self._templates.get(hw_type)
        if template is None:
            template = self._templates[hw_type] = _template(self._issuer, self._settings, hw_type)
        return template

    def _not_before(self, now: datetime) -> tuple[datetime, bytes]:
        """notBefore TLV for the last ``now`` seen: a batch passes one ``now`` for all its requests."""
        if now != self._last_now:
            require_issuer_valid(self._issuer, now, "Device CA")
            moment = normalise_time(now)
            not_before = encode_time(moment)
            if not_before != self._last_not_before:
                self._pieces = {}
            self._last_not_before = not_before
            self._last_moment = moment
            self._last_now = now
        return self._last_moment, self._last_not_before

    def issue(self, request: DeviceRequest, now: datetime, serial: int | None = None) -> IssuedCertificate:
        """Issue one Device Certificate for a checked request; ``serial`` defaults to a random one."""
        tbs, serial, moment = self.to_be_signed(request, now, serial)
        return self.sign(tbs, serial, moment)

    def sign(self, tbs: bytes, serial: int, not_before: datetime) -> IssuedCertificate:
        """Sign a TBSCertificate made by ``to_be_signed``."""
        return IssuedCertificate(self.certificate(tbs), serial, not_before)

    def certificate(self, tbs: bytes) -> bytes:
        """The DER Certificate of a TBSCertificate made by ``build``: ``sign`` without the record
        around it (a batch hands the DER on as it is)."""
        return signed_structure(tbs, self._signer.sign(tbs))

    def to_be_signed(self, request: DeviceRequest, now: datetime,
                     serial: int | None = None) -> tuple[bytes, int, datetime]:
        """The TBSCertificate for a checked request, its serial and notBefore; ``sign`` finishes it.

        Split from signing so that a batch can build all of a chunk's certificates, then sign them
        all: with a PKCS#11 module whose crypto library is not ours (SoftHSM links the system
        OpenSSL), alternating between the two libraries per certificate costs a third more.
        """
        self.check(request)
        return self.build(request.hw_type, request.usage, request.device_id, request.point, now, serial)

    def check(self, request: DeviceRequest) -> None:
        """What ``to_be_signed`` refuses (``ca.*``), alone: a batch checks every CSR of a chunk, then
        screens them (eligibility, duplicate keys) before any certificate is built or signed."""
        constant = self._templates.get(request.hw_type) or self._template_for(request.hw_type)
        if request.usage not in constant.usages:
            raise SmkiError("ca.bad-usage", f"a Device Certificate usage is DS or KA, got {request.usage!r}")
        if len(request.device_id) != 8:
            raise SmkiError("ca.bad-device-id", f"a Device ID is an 8-octet EUI-64, got {len(request.device_id)}")
        point = request.point
        if len(point) != 65 or request.spki_der != P256_SPKI_PREFIX + point:
            raise SmkiError("ca.bad-key", "the public key must be P-256 with an uncompressed point")
        if not request.point_checked:  # a request from ``smki.ca.csr`` decoded it to verify the CSR
            try:
                ec.EllipticCurvePublicKey.from_encoded_point(_P256, point)  # on-curve check, ~7 µs
            except ValueError as exc:
                raise SmkiError("ca.bad-key", "the public key is not a valid P-256 point") from exc

    def prepare(self, hw_type: str) -> None:
        """What ``check`` refuses of a request that ``smki.ca.csr`` made from a CSR of a known shape
        (``csr.known_device_csr``): such a request has the Device ID, usage and key ``check``
        wants by construction, so only the hwType's template is left to make (or fail to)."""
        if hw_type not in self._templates:
            self._template_for(hw_type)

    def build(self, hw_type: str, usage: str, device_id: bytes, point: bytes, now: datetime,
              serial: int | None = None) -> tuple[bytes, int, datetime]:
        """The TBSCertificate of a request that passed ``check`` (given by its fields, which is how
        a batch hands it from the checking pass to the signing one), its serial and notBefore.

        The serial is drawn here, so a CSR refused between the two passes never had one. Every
        length in the TBS is fixed once the hwType, the usage, the serial's length (16 octets for
        ``random_serial``'s) and the notBefore are: so, for the notBefore of the moment, the pieces
        between the variable fields are made once (``_pieces_for``) and a certificate is one join
        (once per Device Certificate, where a few microseconds are a tenth of the Python's share).
        """
        if hw_type not in self._templates:  # first, as ever: the refusals come in the same order
            self._template_for(hw_type)
        if serial is None:
            serial = random_serial()
        if now != self._last_now:  # (a batch's chunk passes one ``now``: the call is once per chunk)
            self._not_before(now)
        moment, not_before = self._last_moment, self._last_not_before
        if not 0 < serial < _MAX_SERIAL:
            raise SmkiError("ca.bad-serial", "a certificate serial must be positive and at most 20 octets")
        serial_octets = serial.to_bytes(serial.bit_length() // 8 + 1, "big")  # as ``encode_serial``
        pieces = self._pieces.get((hw_type, usage, len(serial_octets)))
        if pieces is None:
            pieces = self._pieces_for(hw_type, usage, len(serial_octets), not_before)
        head, before_point, before_ski, before_device_id, tail = pieces
        return b"".join((head, serial_octets, before_point, point, before_ski, key_identifier_from_point(point),
                         before_device_id, device_id, tail)), serial, moment

    def _pieces_for(self, hw_type: str, usage: str, serial_length: int, not_before: bytes) -> _Pieces:
        """The constant pieces of ``build`` for these, cut from the general build (``_tbs``) of a
        placeholder certificate, and checked to give it back: they cannot differ from it."""
        constant = self._templates.get(hw_type) or self._template_for(hw_type)
        serial = 1 << (8 * serial_length - 8)  # a serial of that many octets (0x01, then zeros)
        serial_octets = serial.to_bytes(serial_length, "big")
        ski = key_identifier_from_point(_PLACEHOLDER_POINT)
        tbs = self._tbs(hw_type, usage, _PLACEHOLDER_DEVICE_ID, _PLACEHOLDER_POINT, serial, not_before)
        serial_at = len(tbs) - len(tlv_content(tbs)) + len(constant.version) + 2  # after the INTEGER's header
        point_at = tbs.index(P256_SPKI_PREFIX + _PLACEHOLDER_POINT) + len(P256_SPKI_PREFIX)
        ski_at = tbs.index(constant.ski_prefix + ski, point_at) + len(constant.ski_prefix)
        device_id_at = tbs.index(constant.san_prefix + _PLACEHOLDER_DEVICE_ID, ski_at) + len(constant.san_prefix)
        pieces = (tbs[:serial_at], tbs[serial_at + serial_length : point_at], tbs[point_at + 65 : ski_at],
                  tbs[ski_at + len(ski) : device_id_at], tbs[device_id_at + len(_PLACEHOLDER_DEVICE_ID) :])
        head, before_point, before_ski, before_device_id, tail = pieces
        if b"".join((head, serial_octets, before_point, _PLACEHOLDER_POINT, before_ski, ski, before_device_id,
                     _PLACEHOLDER_DEVICE_ID, tail)) != tbs:
            raise SmkiError("ca.template", "the Device TBSCertificate's fields are not where expected")
        if len(self._pieces) < _MAX_PIECES:
            self._pieces[(hw_type, usage, serial_length)] = pieces
        return pieces

    def _tbs(self, hw_type: str, usage: str, device_id: bytes, point: bytes, serial: int,
             not_before: bytes) -> bytes:
        """The TBSCertificate field by field: what ``build``'s pieces are cut from."""
        constant = self._templates.get(hw_type) or self._template_for(hw_type)
        template = constant.usages[usage]
        body = b"".join(
            (
                constant.version,
                encode_serial(serial),
                constant.algorithm_issuer,
                der_tlv(0x30, not_before + constant.not_after),
                constant.subject,
                P256_SPKI_PREFIX + point,
                template.extensions_header,
                template.key_usage,
                constant.ski_prefix,
                key_identifier_from_point(point),
                constant.san_prefix,
                device_id,
                constant.tail,
            )
        )
        return der_tlv(0x30, body)
