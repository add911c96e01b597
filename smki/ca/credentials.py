"""SMKI credentials: the client and server certificates of the HTTP listeners' mutual TLS.

A credential is *not* a Smart Metering certificate: it is issued by smki's own credentials CA
(key label ``credentials-ca``, separate from the Root, Organisation and Device CAs) so that an ARO
or an Authorised System can prove who it is to a listener, and the listener to it. The profiles
are ordinary TLS ones: P-256, ``clientAuth`` or ``serverAuth``. The identity a listener trusts is
read back from the verified certificate by :func:`credential_identity`: ``CN`` names the ARO,
system or staff member, ``O`` the Party, and ``OU`` says which of the three it is.

Pure: builds TBS bytes with ``cryptography``, signs them through a key-backend ``Signer`` (the
CA key never leaves the backend), no database.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from smki.ca.der import signed_structure
from smki.ca.keyid import key_identifier
from smki.ca.profiles import random_serial, throwaway_key
from smki.errors import SmkiError
from smki.keys.base import Signer

CREDENTIALS_CA_LABEL = "credentials-ca"
#: The kinds of credential, written in the certificate's OU.
KINDS = ("aro", "system", "staff")
CA_VALIDITY = timedelta(days=10 * 366)
CLIENT_VALIDITY = timedelta(days=366)
SERVER_VALIDITY = timedelta(days=366)


@dataclass(frozen=True)
class CredentialIdentity:
    """Who a verified client certificate names."""

    kind: str  # "aro", "system" or "staff"
    name: str  # ARO id, system name or staff id
    party_id: str | None  # None for staff
    serial: str  # 32 lower-case hex digits, as stored


def _draft_and_sign(builder: x509.CertificateBuilder, signer: Signer,
                    issuer_key: ec.EllipticCurvePublicKey) -> x509.Certificate:
    draft = builder.sign(throwaway_key(), hashes.SHA256())
    tbs = draft.tbs_certificate_bytes
    cert = x509.load_der_x509_certificate(signed_structure(tbs, signer.sign(tbs)))
    issuer_key.verify(cert.signature, tbs, ec.ECDSA(hashes.SHA256()))
    return cert


def _base(subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePublicKey, now: datetime,
          lifetime: timedelta) -> x509.CertificateBuilder:
    start = now.replace(microsecond=0) - timedelta(minutes=5)  # tolerate small clock differences
    return (
        x509.CertificateBuilder()
        .serial_number(random_serial())
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key)
        .not_valid_before(start)
        .not_valid_after(start + lifetime)
        .add_extension(x509.SubjectKeyIdentifier(key_identifier(key)), critical=False)
    )


def _aki(issuer_key: ec.EllipticCurvePublicKey) -> x509.AuthorityKeyIdentifier:
    """The AKI as the issuer's SKI (smki's key identifier), so chain building matches them."""
    return x509.AuthorityKeyIdentifier(key_identifier(issuer_key), None, None)


def credentials_ca_name(common_name: str = "SMKI Credentials CA") -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "credentials"),
    ])


def build_credentials_ca(signer: Signer, now: datetime, *,
                         common_name: str = "SMKI Credentials CA") -> x509.Certificate:
    """The self-signed credentials CA certificate for the key behind ``signer``."""
    key = signer.public_key()
    name = credentials_ca_name(common_name)
    builder = (
        _base(name, name, key, now, CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(_aki(key), critical=False)
    )
    return _draft_and_sign(builder, signer, key)


def _leaf_usage() -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                         encipher_only=False, decipher_only=False)


def _check_text(value: str, what: str) -> str:
    if not value or len(value) > 64 or not value.isprintable() or value != value.strip():
        raise SmkiError("credential.bad-name", f"the {what} must be 1-64 printable characters")
    return value


def client_subject(kind: str, name: str, party_id: str | None) -> x509.Name:
    if kind not in KINDS:
        raise SmkiError("credential.bad-kind", f"a credential is for an {', a '.join(KINDS)}")
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, _check_text(name, "name"))]
    if party_id is not None:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, _check_text(party_id, "Party id")))
    elif kind != "staff":
        raise SmkiError("credential.party-missing", f"an {kind} credential names its Party")
    attributes.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, kind))
    return x509.Name(attributes)


def build_client_certificate(issuer: x509.Certificate, signer: Signer, key: ec.EllipticCurvePublicKey, *,
                             kind: str, name: str, party_id: str | None, now: datetime,
                             lifetime: timedelta = CLIENT_VALIDITY) -> x509.Certificate:
    """A TLS client certificate (``clientAuth``) naming an ARO, system or staff member and its Party."""
    builder = (
        _base(client_subject(kind, name, party_id), issuer.subject, key, now, lifetime)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_leaf_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(_aki(signer.public_key()), critical=False)
    )
    return _draft_and_sign(builder, signer, signer.public_key())


def build_server_certificate(issuer: x509.Certificate, signer: Signer, key: ec.EllipticCurvePublicKey, *,
                             hosts: list[str], now: datetime,
                             lifetime: timedelta = SERVER_VALIDITY) -> x509.Certificate:
    """A TLS server certificate (``serverAuth``) for the listeners, with the hosts as SANs."""
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0] if hosts else "smki"),
                         x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "server")])
    builder = (
        _base(subject, issuer.subject, key, now, lifetime)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_leaf_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(_aki(signer.public_key()), critical=False)
    )
    return _draft_and_sign(builder, signer, signer.public_key())


def _one(name: x509.Name, oid: x509.ObjectIdentifier) -> str | None:
    values = name.get_attributes_for_oid(oid)
    if len(values) != 1 or not isinstance(values[0].value, str):
        return None
    return values[0].value


def credential_identity(cert: x509.Certificate) -> CredentialIdentity:
    """What a (chain-verified) client certificate names; ``credential.unrecognised`` if not a credential."""
    subject = cert.subject
    kind = _one(subject, NameOID.ORGANIZATIONAL_UNIT_NAME)
    name = _one(subject, NameOID.COMMON_NAME)
    party = _one(subject, NameOID.ORGANIZATION_NAME)
    if kind not in KINDS or not name or (kind != "staff" and not party):
        raise SmkiError("credential.unrecognised", "the client certificate is not an SMKI credential")
    return CredentialIdentity(kind, name, party if kind != "staff" else None, f"{cert.serial_number:032x}")
