"""The database schema as SQLAlchemy Core tables; migrations in ``migrations/versions`` create it.

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

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    TextClause,
    UniqueConstraint,
    text,
)

from smki.store.types import BigId, UTCDateTime

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: Every table. Core tables, not ORM classes: smki reads and writes with Core statements only, and
#: the ORM's import and mapper set-up (~0.1 s) was most of a simple CLI command's start-up (issue 14).
metadata = MetaData(naming_convention=NAMING)


_REVOKED = text("status = 'R'")
_HAS_ENTITY = text("entity_id IS NOT NULL")
#: The CA certificates: a handful of rows among millions. An OR of equalities rather than ``IN``:
#: SQLite uses a partial index only when a term of the query appears in its predicate, and
#: ``kind = 'device-ca'`` appears in this one (PostgreSQL proves either form).
CA_KINDS_PREDICATE = "kind = 'root' OR kind = 'org-ca' OR kind = 'device-ca'"
_IS_CA = text(CA_KINDS_PREDICATE)


def _partial_index(name: str, *columns: str, where: TextClause, unique: bool = False) -> Index:
    """An index only the rows matching ``where`` enter (the predicate is in ``info["where"]``).

    SQLite's predicate is set here; PostgreSQL's by ``use_postgresql_predicates`` when a PostgreSQL
    engine is made. Naming a dialect's option imports that dialect, and PostgreSQL's (with its
    async drivers) is ~0.05 s that a CLI command on a SQLite home would otherwise pay (issue 14).
    """
    return Index(name, *columns, unique=unique, sqlite_where=where, info={"where": where})


def use_postgresql_predicates() -> None:
    """Give every partial index its PostgreSQL predicate (idempotent; see ``_partial_index``)."""
    for table in metadata.tables.values():
        for index in table.indexes:
            where = index.info.get("where")
            if where is not None:
                index.dialect_kwargs["postgresql_where"] = where


certificates = Table(
    "certificates", metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("serial", String(32), nullable=False, unique=True),
    Column("kind", String(16), nullable=False),
    Column("usage", String(2)),
    Column("issuer_key_id", String(64), nullable=False),
    Column("device_id", LargeBinary(8)),
    Column("entity_id", LargeBinary(8)),
    Column("role", SmallInteger),
    Column("status", String(1), nullable=False),
    Column("not_before", UTCDateTime, nullable=False),
    Column("not_after", UTCDateTime, nullable=False),
    Column("der", LargeBinary, nullable=False),
    Column("issued_at", UTCDateTime, nullable=False, index=True),
    Column("batch_id", String(64), index=True),
    Column("revoked_at", UTCDateTime),
    Column("revocation_reason", SmallInteger),
    #: When the row last changed (issue or status change): daily Repository increments select on it.
    Column("changed_at", UTCDateTime, nullable=False, index=True),
    Index("ix_certificates_device_id_usage_status", "device_id", "usage", "status"),
    _partial_index("ix_certificates_revoked", "issuer_key_id", where=_REVOKED),
    _partial_index("ix_certificates_entity_id", "entity_id", where=_HAS_ENTITY),
    _partial_index("ix_certificates_ca", "kind", "id", where=_IS_CA),
    _partial_index("uq_certificates_device_in_use", "device_id", "usage", unique=True,
                   where=text("status = 'I' AND device_id IS NOT NULL")),
    # ORs, not IN lists: SQLite built a temporary table from an IN list for every row inserted
    # (migration 0011; PostgreSQL databases keep the IN form of 0001, which allows the same values).
    CheckConstraint("status = 'P' OR status = 'I' OR status = 'N' OR status = 'E' OR status = 'R'", name="status"),
    CheckConstraint("usage IS NULL OR usage = 'DS' OR usage = 'KA'", name="usage"),
)


audit_log = Table(
    "audit_log", metadata,
    Column("seq", BigId, primary_key=True, autoincrement=False),
    Column("at", String(40), nullable=False),
    Column("actor", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("subject", Text, nullable=False),
    Column("details", Text, nullable=False),
    Column("prev_hash", LargeBinary(32), nullable=False),
    Column("hash", LargeBinary(32), nullable=False),
    Index("ix_audit_log_subject", "subject"),
)


audit_head = Table(
    "audit_head", metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigId, nullable=False),
    Column("hash", LargeBinary(32), nullable=False),
    CheckConstraint("id = 1", name="single_row"),
)


# -- The Registration Authority's register (issue 3) ----------------------------------------------
# Small sets (RPRs of an entity, staff roles) are JSON text: they are read whole with their row, never
# searched. A Party's Gateway Connections and Registered User roles are dated rows (``party_periods``).


parties = Table(
    "parties", metadata,
    Column("party_id", String(64), primary_key=True),
    Column("name", Text, nullable=False),
    Column("category", String(40), nullable=False),
    Column("srept_passed", Date),
    Column("uept_completed", Date),
    Column("created_at", UTCDateTime, nullable=False),
)


#: The kinds of ``party_periods`` row: a DCC Gateway Connection, a Registered User role.
PERIOD_KINDS = ("gateway-connection", "registered-role")

#: A Party's DCC Gateway Connection or Registered User role and the period it is in force:
#: ``valid_from`` (inclusive) until ``valid_until`` (the day it no longer holds; NULL: still in
#: force), who recorded each end and why (migration 0013). Removing one ends its period; rows are
#: never deleted, so a decision for a past date reads what held then. At most one open period per
#: Party, kind and value (a database guarantee, as for in-use Device Certificates).
party_periods = Table(
    "party_periods", metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("party_id", ForeignKey("parties.party_id"), nullable=False, index=True),
    Column("kind", String(24), nullable=False),
    Column("value", String(64), nullable=False),
    Column("valid_from", Date, nullable=False),
    Column("valid_until", Date),
    Column("added_by", String(64), nullable=False),
    Column("added_reason", Text),
    Column("removed_by", String(64)),
    Column("removed_reason", Text),
    _partial_index("uq_party_periods_open", "party_id", "kind", "value", unique=True,
                   where=text("valid_until IS NULL")),
    CheckConstraint("kind = 'gateway-connection' OR kind = 'registered-role'", name="kind"),
    CheckConstraint("valid_until IS NULL OR valid_until >= valid_from", name="period"),
)


party_entities = Table(
    "party_entities", metadata,
    Column("entity_id", LargeBinary(8), primary_key=True),
    Column("party_id", ForeignKey("parties.party_id"), nullable=False, index=True),
    Column("roles", Text, nullable=False),
)


subscriptions = Table(
    "subscriptions", metadata,
    Column("party_id", ForeignKey("parties.party_id"), primary_key=True),
    Column("policy", String(16), primary_key=True),
    Column("standing", String(16), nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)


staff = Table(
    "staff", metadata,
    Column("staff_id", String(64), primary_key=True),
    Column("name", Text, nullable=False),
    Column("roles", Text, nullable=False),
    Column("active", Boolean, nullable=False, default=True),
)


aros = Table(
    "aros", metadata,
    Column("aro_id", String(64), primary_key=True),
    Column("party_id", ForeignKey("parties.party_id"), nullable=False, index=True),
    Column("name", Text, nullable=False),
    Column("nominated_by", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("identity_verified", Date),
    Column("identity_check", Text),
    Column("verified_by", String(64)),
    Column("screened", Date),
    Column("screening_standard", Text),
    Column("created_at", UTCDateTime, nullable=False),
)


applications = Table(
    "applications", metadata,
    Column("application_id", BigId, primary_key=True, autoincrement=True),
    Column("party_id", ForeignKey("parties.party_id"), nullable=False, index=True),
    Column("policy", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("proposed_by", String(64)),
    Column("proposed_at", UTCDateTime),
    Column("proposal", Text),
    Column("decided_by", String(64)),
    Column("decided_at", UTCDateTime),
    Column("decision", Text),
)


evidence = Table(
    "evidence", metadata,
    Column("evidence_id", BigId, primary_key=True, autoincrement=True),
    Column("application_id", ForeignKey("applications.application_id"), nullable=False, index=True),
    Column("kind", String(40), nullable=False),
    Column("reference", Text, nullable=False),
    Column("recorded_by", String(64), nullable=False),
    Column("recorded_on", Date, nullable=False),
)


#: Every CRL (Organisation CA) and ARL (Root) ever published, kept retrievable by number.
revocation_lists = Table(
    "revocation_lists", metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("kind", String(3), nullable=False),
    Column("number", BigInteger, nullable=False),
    Column("this_update", UTCDateTime, nullable=False),
    Column("next_update", UTCDateTime, nullable=False),
    Column("entries", BigInteger, nullable=False),
    Column("der", LargeBinary, nullable=False),
    UniqueConstraint("kind", "number", name="uq_revocation_lists_kind_number"),
    CheckConstraint("kind IN ('CRL', 'ARL')", name="kind"),
)


#: An action one RA operator proposed that a different RA approver must approve (four-eyes).
dual_control = Table(
    "dual_control", metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("action", String(40), nullable=False),
    Column("subject", String(64), nullable=False),
    Column("payload", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("proposed_by", String(64), nullable=False),
    Column("proposed_at", UTCDateTime, nullable=False),
    Column("decided_by", String(64)),
    Column("decided_at", UTCDateTime),
)


# -- The HTTP interfaces (issue 4): credentials, batch jobs, capacity -------------------------------

#: An SMKI credential (TLS client/server certificate from the credentials CA) and its status.
#: The listener looks the presented certificate's serial up here on every request, so revoking a
#: credential takes effect on the next request without any CRL distribution.
credentials_table = Table(
    "credentials", metadata,
    Column("serial", String(32), primary_key=True),
    Column("kind", String(8), nullable=False),  # ca, server, aro, system, staff
    Column("name", String(64), nullable=False),
    Column("party_id", String(64)),
    Column("aro_id", String(64)),  # the ARO answerable for a system credential
    Column("status", String(8), nullable=False),  # active, revoked
    Column("not_before", UTCDateTime, nullable=False),
    Column("not_after", UTCDateTime, nullable=False),
    Column("issued_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime),
    Column("der", LargeBinary, nullable=False),
    Index("ix_credentials_kind_status", "kind", "status"),
    CheckConstraint("status IN ('active', 'revoked')", name="status"),
)


#: A Device CSR batch submitted over the web services or the JSON API; ``id`` is the DCC BatchId.
batch_jobs = Table(
    "batch_jobs", metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("ref", String(64), nullable=False, unique=True),  # certificates.batch_id
    Column("party_id", String(64), nullable=False),
    Column("aro_id", String(64), nullable=False),
    Column("system", String(64)),
    Column("route", String(8), nullable=False),
    Column("interface", String(8), nullable=False),  # xml, json
    Column("client_ref", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("total", Integer, nullable=False),
    Column("processed", Integer, nullable=False, default=0),
    Column("issued", Integer, nullable=False, default=0),
    Column("rejected", Integer, nullable=False, default=0),
    Column("owner", String(128)),
    Column("heartbeat_at", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Column("started_at", UTCDateTime),
    Column("finished_at", UTCDateTime),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("error_code", String(64)),
    Column("error_text", Text),
    Index("ix_batch_jobs_status", "status"),
    Index("ix_batch_jobs_party_id", "party_id"),
)


#: One CSR of a batch job and, once processed, its outcome (certificate serial or error).
batch_items = Table(
    "batch_items", metadata,
    #: The job's id, with no foreign key: checking one per item was most of the cost of storing a
    #: batch on PostgreSQL (migration 0010); items are added with their job and deleted before it.
    Column("batch_id", BigId, primary_key=True, autoincrement=False),
    Column("idx", Integer, primary_key=True),
    Column("item_id", String(100), nullable=False),
    Column("csr", LargeBinary, nullable=False),
    Column("outcome", String(8)),  # None: not yet processed; ok; error
    Column("serial", String(32)),
    Column("error_code", String(64)),
    Column("error_text", Text),
)


#: A per-Party token bucket for one capacity limit; shared by every server process.
capacity_buckets = Table(
    "capacity_buckets", metadata,
    Column("party_id", String(64), primary_key=True),
    Column("limit_name", String(40), primary_key=True),
    Column("tokens", Float, nullable=False),
    Column("updated", Float, nullable=False),  # POSIX seconds
)


#: A secret every server process of every node must share (e.g. the Portal's form-token key).
#: ``previous`` is the value before the last rotation, still accepted for a grace period so that
#: a form rendered just before a rotation can still be posted.
service_secrets = Table(
    "service_secrets", metadata,
    Column("name", String(64), primary_key=True),
    Column("value", LargeBinary, nullable=False),
    Column("previous", LargeBinary),
    Column("rotated_at", UTCDateTime, nullable=False),
)


# -- Issue 13: the key register, the device register -----------------------------------------------


#: Every public key smki has certified, by fingerprint: a CSR whose key is here is a duplicate
#: (``csr.duplicate``, the DCC's ``CR:9999``). ``serial`` is the latest certificate for the key (an
#: Organisation Certificate re-issued for the same key moves it on, spec §7.6).
certified_keys_table = Table(
    "certified_keys", metadata,
    Column("fingerprint", LargeBinary(16), primary_key=True),
    Column("serial", String(32), nullable=False),
    #: SQLite: the rows live in the primary-key b-tree itself (no rowid table beside it), so a
    #: batch's insert touches one b-tree per key, not two.
    sqlite_with_rowid=False,
)


#: A Device in the device register, standing in for the DCC's Smart Metering Inventory (issue 13).
devices_table = Table(
    "devices", metadata,
    Column("device_id", LargeBinary(8), primary_key=True),
    Column("device_type", String(8), nullable=False),
    Column("smi_status", String(32), nullable=False),
    Column("import_supplier", String(64)),
    Column("gas_supplier", String(64)),
    Column("network_operator", String(64)),
    Column("changed_on", Date, nullable=False),
)


#: A dated change of a Device's register entry: its state from ``effective`` on, and who recorded it.
device_changes_table = Table(
    "device_changes", metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("device_id", LargeBinary(8), nullable=False, index=True),
    Column("effective", Date, nullable=False),
    Column("device_type", String(8), nullable=False),
    Column("smi_status", String(32), nullable=False),
    Column("import_supplier", String(64)),
    Column("gas_supplier", String(64)),
    Column("network_operator", String(64)),
    Column("recorded_by", String(128), nullable=False),
)
