"""The database schema (SQLAlchemy 2 declarative); migrations in ``migrations/versions`` create it.

Design choices, for 10⁸ Device Certificates and ~13,000 inserts/s:

* ``device_id`` and ``entity_id`` are the 8 raw EUI-64 octets (``LargeBinary``), not 16 hex
  characters: half the size in the row and in every index that holds them, the representation the
  rest of smki uses (``smki.eui64``), and no case-folding ambiguity.
* ``serial`` is 32 lower-case hex characters (a 128-bit serial, zero-padded): text so it prints and
  matches the Repository interface's hex form; unique.
* Indexes are only those a query needs, because each one costs every insert: serial (unique),
  (device_id, usage, status) for "a device's certificates / the in-use one", issued_at
  (time-range searches), changed_at (daily increments), batch_id, and three *partial* indexes
  that device rows (almost all rows) never enter: entity_id where set, issuer_key_id of
  revoked certificates (CRLs/ARLs), and (kind, id) of the CA certificates — every issuance reads
  the newest in-use CA certificate, and without it that read scanned the whole table (issue 15).
  A status index would let the planner scan every in-use certificate instead of using the
  device index, so there is none. A partial unique index also makes "one in-use Device
  Certificate per device and usage" a database guarantee, so two workers racing on the same
  device cannot both leave one in use.
* ``audit_head`` is a single row (id = 1) holding the newest (seq, hash): locking it serialises
  every appender across processes, and comparing with it detects deleted newest records.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from smki.store.types import BigId, UTCDateTime

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


_REVOKED = text("status = 'R'")
_HAS_ENTITY = text("entity_id IS NOT NULL")
#: The CA certificates: a handful of rows among millions. An OR of equalities rather than ``IN``:
#: SQLite uses a partial index only when a term of the query appears in its predicate, and
#: ``kind = 'device-ca'`` appears in this one (PostgreSQL proves either form).
CA_KINDS_PREDICATE = "kind = 'root' OR kind = 'org-ca' OR kind = 'device-ca'"
_IS_CA = text(CA_KINDS_PREDICATE)


class Certificate(Base):
    __tablename__ = "certificates"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    serial: Mapped[str] = mapped_column(String(32), nullable=False, unique=True)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    usage: Mapped[str | None] = mapped_column(String(2))
    issuer_key_id: Mapped[str] = mapped_column(String(64), nullable=False)
    device_id: Mapped[bytes | None] = mapped_column(LargeBinary(8))
    entity_id: Mapped[bytes | None] = mapped_column(LargeBinary(8))
    role: Mapped[int | None] = mapped_column(SmallInteger)
    status: Mapped[str] = mapped_column(String(1), nullable=False)
    not_before: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    not_after: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    der: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, index=True)
    batch_id: Mapped[str | None] = mapped_column(String(64), index=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revocation_reason: Mapped[int | None] = mapped_column(SmallInteger)
    #: When the row last changed (issue or status change): daily Repository increments select on it.
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, index=True)

    __table_args__ = (
        Index("ix_certificates_device_id_usage_status", "device_id", "usage", "status"),
        Index("ix_certificates_revoked", "issuer_key_id", sqlite_where=_REVOKED, postgresql_where=_REVOKED),
        Index("ix_certificates_entity_id", "entity_id", sqlite_where=_HAS_ENTITY, postgresql_where=_HAS_ENTITY),
        Index("ix_certificates_ca", "kind", "id", sqlite_where=_IS_CA, postgresql_where=_IS_CA),
        Index(
            "uq_certificates_device_in_use",
            "device_id",
            "usage",
            unique=True,
            sqlite_where=text("status = 'I' AND device_id IS NOT NULL"),
            postgresql_where=text("status = 'I' AND device_id IS NOT NULL"),
        ),
        CheckConstraint("status IN ('P', 'I', 'N', 'E', 'R')", name="status"),
        CheckConstraint("usage IS NULL OR usage IN ('DS', 'KA')", name="usage"),
    )


class AuditLog(Base):
    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    at: Mapped[str] = mapped_column(String(40), nullable=False)
    actor: Mapped[str] = mapped_column(Text, nullable=False)
    action: Mapped[str] = mapped_column(Text, nullable=False)
    subject: Mapped[str] = mapped_column(Text, nullable=False)
    details: Mapped[str] = mapped_column(Text, nullable=False)
    prev_hash: Mapped[bytes] = mapped_column(LargeBinary(32), nullable=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32), nullable=False)

    __table_args__ = (Index("ix_audit_log_subject", "subject"),)


class AuditHead(Base):
    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigId, nullable=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32), nullable=False)

    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)


certificates = cast(Table, Certificate.__table__)
audit_log = cast(Table, AuditLog.__table__)
audit_head = cast(Table, AuditHead.__table__)


# -- The Registration Authority's register (issue 3) ----------------------------------------------
# Small sets (roles, connections) are JSON text: they are read whole with their row, never searched.


class Party(Base):
    __tablename__ = "parties"

    party_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(Text, nullable=False)
    category: Mapped[str] = mapped_column(String(40), nullable=False)
    srept_passed: Mapped[date | None] = mapped_column(Date)
    uept_completed: Mapped[date | None] = mapped_column(Date)
    registered_user_roles: Mapped[str] = mapped_column(Text, nullable=False, default="[]")
    gateway_connections: Mapped[str] = mapped_column(Text, nullable=False, default="[]")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class PartyEntity(Base):
    __tablename__ = "party_entities"

    entity_id: Mapped[bytes] = mapped_column(LargeBinary(8), primary_key=True)
    party_id: Mapped[str] = mapped_column(ForeignKey("parties.party_id"), nullable=False, index=True)
    roles: Mapped[str] = mapped_column(Text, nullable=False)


class Subscription(Base):
    __tablename__ = "subscriptions"

    party_id: Mapped[str] = mapped_column(ForeignKey("parties.party_id"), primary_key=True)
    policy: Mapped[str] = mapped_column(String(16), primary_key=True)
    standing: Mapped[str] = mapped_column(String(16), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class Staff(Base):
    __tablename__ = "staff"

    staff_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(Text, nullable=False)
    roles: Mapped[str] = mapped_column(Text, nullable=False)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)


class Aro(Base):
    __tablename__ = "aros"

    aro_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    party_id: Mapped[str] = mapped_column(ForeignKey("parties.party_id"), nullable=False, index=True)
    name: Mapped[str] = mapped_column(Text, nullable=False)
    nominated_by: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    identity_verified: Mapped[date | None] = mapped_column(Date)
    identity_check: Mapped[str | None] = mapped_column(Text)
    verified_by: Mapped[str | None] = mapped_column(String(64))
    screened: Mapped[date | None] = mapped_column(Date)
    screening_standard: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class Application(Base):
    __tablename__ = "applications"

    application_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    party_id: Mapped[str] = mapped_column(ForeignKey("parties.party_id"), nullable=False, index=True)
    policy: Mapped[str] = mapped_column(String(16), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    proposed_by: Mapped[str | None] = mapped_column(String(64))
    proposed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    proposal: Mapped[str | None] = mapped_column(Text)
    decided_by: Mapped[str | None] = mapped_column(String(64))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decision: Mapped[str | None] = mapped_column(Text)


class EvidenceRow(Base):
    __tablename__ = "evidence"

    evidence_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("applications.application_id"), nullable=False,
                                                index=True)
    kind: Mapped[str] = mapped_column(String(40), nullable=False)
    reference: Mapped[str] = mapped_column(Text, nullable=False)
    recorded_by: Mapped[str] = mapped_column(String(64), nullable=False)
    recorded_on: Mapped[date] = mapped_column(Date, nullable=False)


parties = cast(Table, Party.__table__)
party_entities = cast(Table, PartyEntity.__table__)
subscriptions = cast(Table, Subscription.__table__)
staff = cast(Table, Staff.__table__)
aros = cast(Table, Aro.__table__)
applications = cast(Table, Application.__table__)
evidence = cast(Table, EvidenceRow.__table__)


class RevocationList(Base):
    """Every CRL (Organisation CA) and ARL (Root) ever published, kept retrievable by number."""

    __tablename__ = "revocation_lists"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(3), nullable=False)
    number: Mapped[int] = mapped_column(BigInteger, nullable=False)
    this_update: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    next_update: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    entries: Mapped[int] = mapped_column(BigInteger, nullable=False)
    der: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)

    __table_args__ = (
        UniqueConstraint("kind", "number", name="uq_revocation_lists_kind_number"),
        CheckConstraint("kind IN ('CRL', 'ARL')", name="kind"),
    )


revocation_lists = cast(Table, RevocationList.__table__)


class DualControl(Base):
    """An action one RA operator proposed that a different RA approver must approve (four-eyes)."""

    __tablename__ = "dual_control"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    action: Mapped[str] = mapped_column(String(40), nullable=False)
    subject: Mapped[str] = mapped_column(String(64), nullable=False)
    payload: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    proposed_by: Mapped[str] = mapped_column(String(64), nullable=False)
    proposed_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    decided_by: Mapped[str | None] = mapped_column(String(64))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


dual_control = cast(Table, DualControl.__table__)


# -- The HTTP interfaces (issue 4): credentials, batch jobs, capacity -------------------------------
# Imports are repeated here so this block stays self-contained at the end of the module.
from sqlalchemy import Float  # noqa: E402


class Credential(Base):
    """An SMKI credential (TLS client/server certificate from the credentials CA) and its status.

    The listener looks the presented certificate's serial up here on every request, so revoking a
    credential takes effect on the next request without any CRL distribution.
    """

    __tablename__ = "credentials"

    serial: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), nullable=False)  # ca, server, aro, system, staff
    name: Mapped[str] = mapped_column(String(64), nullable=False)
    party_id: Mapped[str | None] = mapped_column(String(64))
    aro_id: Mapped[str | None] = mapped_column(String(64))  # the ARO answerable for a system credential
    status: Mapped[str] = mapped_column(String(8), nullable=False)  # active, revoked
    not_before: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    not_after: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    der: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)

    __table_args__ = (
        Index("ix_credentials_kind_status", "kind", "status"),
        CheckConstraint("status IN ('active', 'revoked')", name="status"),
    )


class BatchJob(Base):
    """A Device CSR batch submitted over the web services or the JSON API; ``id`` is the DCC BatchId."""

    __tablename__ = "batch_jobs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    ref: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)  # certificates.batch_id
    party_id: Mapped[str] = mapped_column(String(64), nullable=False)
    aro_id: Mapped[str] = mapped_column(String(64), nullable=False)
    system: Mapped[str | None] = mapped_column(String(64))
    route: Mapped[str] = mapped_column(String(8), nullable=False)
    interface: Mapped[str] = mapped_column(String(8), nullable=False)  # xml, json
    client_ref: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    total: Mapped[int] = mapped_column(Integer, nullable=False)
    processed: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    issued: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    rejected: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    owner: Mapped[str | None] = mapped_column(String(128))
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_text: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("ix_batch_jobs_status", "status"),
        Index("ix_batch_jobs_party_id", "party_id"),
    )


class BatchItemRow(Base):
    """One CSR of a batch job and, once processed, its outcome (certificate serial or error)."""

    __tablename__ = "batch_items"

    batch_id: Mapped[int] = mapped_column(ForeignKey("batch_jobs.id", ondelete="CASCADE"), primary_key=True)
    idx: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[str] = mapped_column(String(100), nullable=False)
    csr: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    outcome: Mapped[str | None] = mapped_column(String(8))  # None: not yet processed; ok; error
    serial: Mapped[str | None] = mapped_column(String(32))
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_text: Mapped[str | None] = mapped_column(Text)


class CapacityBucket(Base):
    """A per-Party token bucket for one capacity limit; shared by every server process."""

    __tablename__ = "capacity_buckets"

    party_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    limit_name: Mapped[str] = mapped_column(String(40), primary_key=True)
    tokens: Mapped[float] = mapped_column(Float, nullable=False)
    updated: Mapped[float] = mapped_column(Float, nullable=False)  # POSIX seconds


class ServiceSecret(Base):
    """A secret every server process of every node must share (e.g. the Portal's form-token key).

    ``previous`` is the value before the last rotation, still accepted for a grace period so that
    a form rendered just before a rotation can still be posted.
    """

    __tablename__ = "service_secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    previous: Mapped[bytes | None] = mapped_column(LargeBinary)
    rotated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


credentials_table = cast(Table, Credential.__table__)
batch_jobs = cast(Table, BatchJob.__table__)
batch_items = cast(Table, BatchItemRow.__table__)
capacity_buckets = cast(Table, CapacityBucket.__table__)
service_secrets = cast(Table, ServiceSecret.__table__)


# -- Issue 13: the key register, the device register -----------------------------------------------


class CertifiedKey(Base):
    """Every public key smki has certified, by fingerprint: a CSR whose key is here is a duplicate
    (``csr.duplicate``, the DCC's ``CR:9999``). ``serial`` is the latest certificate for the key (an
    Organisation Certificate re-issued for the same key moves it on, spec §7.6)."""

    __tablename__ = "certified_keys"

    fingerprint: Mapped[bytes] = mapped_column(LargeBinary(16), primary_key=True)
    serial: Mapped[str] = mapped_column(String(32), nullable=False)

    #: SQLite: the rows live in the primary-key b-tree itself (no rowid table beside it), so a
    #: batch's insert touches one b-tree per key, not two.
    __table_args__ = ({"sqlite_with_rowid": False},)


certified_keys_table = cast(Table, CertifiedKey.__table__)


class DeviceEntry(Base):
    """A Device in the device register, standing in for the DCC's Smart Metering Inventory (issue 13)."""

    __tablename__ = "devices"

    device_id: Mapped[bytes] = mapped_column(LargeBinary(8), primary_key=True)
    device_type: Mapped[str] = mapped_column(String(8), nullable=False)
    smi_status: Mapped[str] = mapped_column(String(32), nullable=False)
    import_supplier: Mapped[str | None] = mapped_column(String(64))
    gas_supplier: Mapped[str | None] = mapped_column(String(64))
    network_operator: Mapped[str | None] = mapped_column(String(64))
    changed_on: Mapped[date] = mapped_column(Date, nullable=False)


class DeviceChange(Base):
    """A dated change of a Device's register entry: its state from ``effective`` on, and who recorded it."""

    __tablename__ = "device_changes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    device_id: Mapped[bytes] = mapped_column(LargeBinary(8), nullable=False, index=True)
    effective: Mapped[date] = mapped_column(Date, nullable=False)
    device_type: Mapped[str] = mapped_column(String(8), nullable=False)
    smi_status: Mapped[str] = mapped_column(String(32), nullable=False)
    import_supplier: Mapped[str | None] = mapped_column(String(64))
    gas_supplier: Mapped[str | None] = mapped_column(String(64))
    network_operator: Mapped[str | None] = mapped_column(String(64))
    recorded_by: Mapped[str] = mapped_column(String(128), nullable=False)


devices_table = cast(Table, DeviceEntry.__table__)
device_changes_table = cast(Table, DeviceChange.__table__)
