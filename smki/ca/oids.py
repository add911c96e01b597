"""Object identifiers the SMKI profiles use that ``cryptography`` does not name (spec §4).

Deployment-specific OIDs (policies, hwType) are configuration (``smki.config.Settings``); only
the standard ones live here.
"""

from __future__ import annotations

from cryptography.x509.oid import ObjectIdentifier

#: RFC 4108 hardwareModuleName: the otherName type of a Device Certificate's subjectAltName.
HARDWARE_MODULE_NAME = ObjectIdentifier("1.3.6.1.5.5.7.8.4")
#: X.520 x500UniqueIdentifier: the Entity Identifier in an Organisation Certificate's subject.
X500_UNIQUE_IDENTIFIER = ObjectIdentifier("2.5.4.45")
