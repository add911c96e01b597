"""Domain vocabulary shared by the RA, the CA, the store and the interfaces (spec §1, §3.1, §4).

Plain enums and constants only: no behaviour, no I/O. Their values are the codes that appear on the wire and in
the store, so they never change once released.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum
from zoneinfo import ZoneInfo

#: The largest id, number or cursor a database row can hold (a signed 64-bit BIGINT): every
#: interface refuses a larger one itself, since the driver would overflow rather than find no row.
MAX_ROW_ID = 2**63 - 1

#: The clock the SEC's times of day are read on: core hours (07:00-20:00, Appendix N §3.1) and the
#: batch processing window (20:00-08:00) are UK local time, GMT in winter and BST in summer.
UK_TIME = ZoneInfo("Europe/London")


class Usage(StrEnum):
    """Key usage of an end-entity certificate: exactly one per certificate (spec §4.1, §4.2)."""

    DS = "DS"  # digitalSignature
    KA = "KA"  # keyAgreement


class CertKind(StrEnum):
    """Which profile a certificate was issued under."""

    ROOT = "root"
    ORGANISATION_CA = "org-ca"
    DEVICE_CA = "device-ca"
    ORGANISATION = "org"
    DEVICE = "device"


class CertificatePolicy(StrEnum):
    """The two Certificate Policies a Party may become an Authorised Subscriber for."""

    ORGANISATION = "organisation"
    DEVICE = "device"


class CertStatus(StrEnum):
    """Repository status codes (spec §3.1)."""

    PENDING = "P"
    IN_USE = "I"
    NOT_IN_USE = "N"
    EXPIRED = "E"
    REVOKED = "R"


class Route(StrEnum):
    """How a request reached smki: decided by the listener, never by the client (spec §3)."""

    GATEWAY = "gateway"  # a DCC Gateway Connection
    SPOTI = "spoti"  # the SMKI Portal interface Over The Internet
    OPERATOR = "operator"  # a CA/RA operator at the console (not subscriber-facing)


class RemotePartyRole(IntEnum):
    """Remote Party Roles (spec §4): the OU of an Organisation Certificate, as two hex digits."""

    ROOT = 0
    RECOVERY = 1
    SUPPLIER = 2
    NETWORK_OPERATOR = 3
    ACCESS_CONTROL_BROKER = 4
    TRANSITIONAL_COS = 5
    WAN_PROVIDER = 6
    ISSUING_AUTHORITY = 7
    LOAD_CONTROLLER = 8
    OTHER = 127

    @property
    def ou(self) -> str:
        """The OU text: two hex digits, e.g. ``02`` for supplier, ``7F`` for other."""
        return f"{int(self):02X}"


#: Which key usages an Organisation Certificate may have for each Remote Party Role: the DCC's test
#: PKI (spec §7.3). 01, 05, 06: DS only; 03, 04, 08, 7F: DS and KA; 02: DS and KA, where a supplier
#: holds a second KA certificate for prepayment top-up (DUIS ``KeyAgreementTopUpCertificate``),
#: which a CSR cannot tell from the first (both are keyAgreement). 00 and 07 are the CAs' own.
ROLE_USAGES: dict[RemotePartyRole, frozenset[Usage]] = {
    RemotePartyRole.RECOVERY: frozenset({Usage.DS}),
    RemotePartyRole.SUPPLIER: frozenset({Usage.DS, Usage.KA}),
    RemotePartyRole.NETWORK_OPERATOR: frozenset({Usage.DS, Usage.KA}),
    RemotePartyRole.ACCESS_CONTROL_BROKER: frozenset({Usage.DS, Usage.KA}),
    RemotePartyRole.TRANSITIONAL_COS: frozenset({Usage.DS}),
    RemotePartyRole.WAN_PROVIDER: frozenset({Usage.DS}),
    RemotePartyRole.LOAD_CONTROLLER: frozenset({Usage.DS, Usage.KA}),
    RemotePartyRole.OTHER: frozenset({Usage.DS, Usage.KA}),
}


class DeviceType(StrEnum):
    """Smart Metering Inventory device types (GBCS): what the device register records per Device ID."""

    ESME = "ESME"  # electricity smart meter
    GSME = "GSME"  # gas smart meter
    CHF = "CHF"  # communications hub function
    GPF = "GPF"  # gas proxy function
    PPMID = "PPMID"  # prepayment meter interface device
    HCALCS = "HCALCS"  # HAN-connected auxiliary load control switch
    IHD = "IHD"  # in-home display
    CAD = "CAD"  # consumer access device
    SAPC = "SAPC"  # standalone auxiliary proportional controller
    OTHER = "OTHER"


class SmiStatus(StrEnum):
    """SMI status of a Device (the DCC's Smart Metering Inventory provisioning states, spec §7.1)."""

    PENDING = "pending"
    WHITELISTED = "whitelisted"
    INSTALLED_NOT_COMMISSIONED = "installed-not-commissioned"
    COMMISSIONED = "commissioned"
    DECOMMISSIONED = "decommissioned"
    WITHDRAWN = "withdrawn"
    SUSPENDED = "suspended"
    RECOVERY = "recovery"
    RECOVERED = "recovered"
