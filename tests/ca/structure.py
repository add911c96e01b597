"""An independent (pyasn1) reading of a certificate's *shape*: what must match the references.

Keys, serial values, dates and identifiers differ between our certificates and the DCC's; the
structure (field order, string tags, extension order and criticality, key-identifier form) must
not. ``shape()`` keeps exactly the structural facts, so a test compares two dicts.
"""

from __future__ import annotations

from typing import Any

from pyasn1.codec.der import decoder, encoder
from pyasn1_alt_modules import rfc5280

TAG_NAMES = {0x03: "BIT STRING", 0x0C: "UTF8String", 0x13: "PrintableString"}


def decode_certificate(der: bytes) -> Any:
    cert, rest = decoder.decode(der, asn1Spec=rfc5280.Certificate())
    assert rest == b""
    assert encoder.encode(cert) == der, "not DER"
    return cert


def name_shape(name: Any) -> list[tuple[str, str]]:
    """[(attribute OID, string tag)] per RDN, in order (each RDN must hold one attribute)."""
    out = []
    for rdn in name["rdnSequence"]:
        assert len(rdn) == 1
        attribute = rdn[0]
        out.append((str(attribute["type"]), TAG_NAMES.get(bytes(attribute["value"])[0], "other")))
    return out


def extension_value(cert: Any, oid: Any) -> bytes:
    for ext in cert["tbsCertificate"]["extensions"]:
        if ext["extnID"] == oid:
            return bytes(ext["extnValue"])
    raise KeyError(str(oid))


def shape(der: bytes) -> dict[str, Any]:
    cert = decode_certificate(der)
    tbs = cert["tbsCertificate"]
    serial = int(tbs["serialNumber"])
    serial_der = encoder.encode(tbs["serialNumber"])
    ski, _ = decoder.decode(
        extension_value(cert, rfc5280.id_ce_subjectKeyIdentifier), asn1Spec=rfc5280.SubjectKeyIdentifier()
    )
    result: dict[str, Any] = {
        "version": int(tbs["version"]),
        "signature": str(tbs["signature"]["algorithm"]),
        "outer_signature": str(cert["signatureAlgorithm"]["algorithm"]),
        "signature_params_absent": not tbs["signature"]["parameters"].isValue,
        "serial_octets": serial_der[1],
        "serial_positive": serial > 0,
        "issuer": name_shape(tbs["issuer"]),
        "subject": name_shape(tbs["subject"]),
        "not_before_type": tbs["validity"]["notBefore"].getName(),
        "not_after_type": tbs["validity"]["notAfter"].getName(),
        "spki_algorithm": str(tbs["subjectPublicKeyInfo"]["algorithm"]["algorithm"]),
        "spki_octets": len(encoder.encode(tbs["subjectPublicKeyInfo"])),
        "extensions": [(str(e["extnID"]), bool(e["critical"])) for e in tbs["extensions"]],
        "ski_octets": len(bytes(ski)),
        "ski_first_nibble": bytes(ski)[0] >> 4,
    }
    try:
        aki_der = extension_value(cert, rfc5280.id_ce_authorityKeyIdentifier)
    except KeyError:
        result["aki"] = None
    else:
        aki, _ = decoder.decode(aki_der, asn1Spec=rfc5280.AuthorityKeyIdentifier())
        result["aki"] = {
            "components": [name for name in aki if aki[name].isValue],
            "key_id_octets": len(bytes(aki["keyIdentifier"])),
            "key_id_first_nibble": bytes(aki["keyIdentifier"])[0] >> 4,
        }
    return result
