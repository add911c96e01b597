"""The store: the only code that talks to the database (certificates and the audit log).

``Store.open(url)`` → ``store.migrate()`` → reads on ``store`` and writes in
``with store.transaction() as tx:``. See ``smki.store.store`` for the guarantees.
"""

from smki.store.records import (
    CertificateRecord,
    NewCertificate,
    RevocationListRecord,
    RevokedEntry,
    normalise_serial,
)
from smki.store.store import MAX_PAGE, AuditQuery, CertificateQuery, Store
from smki.store.transaction import Transaction

__all__ = [
    "MAX_PAGE",
    "AuditQuery",
    "CertificateQuery",
    "CertificateRecord",
    "NewCertificate",
    "RevocationListRecord",
    "RevokedEntry",
    "Store",
    "Transaction",
    "normalise_serial",
]
