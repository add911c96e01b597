"""Engines for SQLite (the embedded default) and PostgreSQL, with the settings the store relies on.

SQLite: WAL (readers never block the writer), ``synchronous=NORMAL`` (a committed transaction
survives a process crash — kill -9 — in WAL mode; only an OS crash or power loss can lose the last
few commits, and never leaves a torn one), foreign keys on, a busy timeout so concurrent processes
wait instead of failing. pysqlite's own transaction handling is switched off and write transactions
start with ``BEGIN IMMEDIATE``: two writers then serialise at BEGIN rather than one failing with
"database is locked" when it upgrades a read lock mid-transaction.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url

from smki.errors import SmkiError
from smki.settings_model import database_url_problem

#: Execution option a connection carries when it will write (see ``_begin``).
WRITE_OPTION = "smki_write"
BUSY_TIMEOUT_MS = 60_000
#: The page size of a new SQLite database: 4 KiB (SQLite's own default, set here so that a build
#: with another default makes the same file). A batch's commit writes every page it touched to the
#: WAL, whole, and two indexes every Device Certificate enters take random keys (the serial, spec
#: §4, and the key register's fingerprint): once the store holds a few hundred thousand
#: certificates, each certificate touches a page of each of its own, so the bytes written per
#: certificate grow with the page size. Measured with ``smki bench batch-growth --page-size 4096
#: --page-size 16384`` (docs/performance.md, "sixteenth session"): at 500,000 to 1,000,000
#: certificates, 17-19 KiB written per certificate with 4 KiB pages against 36-48 KiB with 16 KiB,
#: and the single writer's CPU 6-19 µs less per certificate. 16 KiB pages were the cheaper only while
#: the store held under ~300,000 certificates (~350,000 through the Gateway batch service, whose
#: commits also update the stored batch's items): less than a night of the DCC's batches. A
#: database made before keeps its size (WAL mode cannot change it): ``VACUUM`` after ``PRAGMA
#: journal_mode=DELETE`` would convert it.
SQLITE_PAGE_SIZE = 4_096
#: How much WAL SQLite lets grow before it checkpoints (see ``_connect``).
WAL_CHECKPOINT_BYTES = 64 * 1024 * 1024


def create_store_engine(url: str, *, synchronous: str = "NORMAL") -> Engine:
    """An Engine for ``url`` (``sqlite:///path`` or ``postgresql+psycopg://…``)."""
    problem = database_url_problem(url)
    if problem is not None:
        raise SmkiError("store.bad-url", problem)
    if make_url(url).get_backend_name() == "sqlite":
        return _sqlite_engine(url, synchronous)
    from smki.store.models import use_postgresql_predicates

    use_postgresql_predicates()  # the dialect is loaded now in any case
    return _postgresql_engine(url)


#: psycopg prepares a statement once a connection has run it this many times (psycopg's default: 5).
PREPARE_AFTER_USES = 1
#: A pooled PostgreSQL connection idle longer than this is pinged before it is handed out.
PING_AFTER_IDLE_SECONDS = 10.0

#: Each process's pool of connections: ``POOL_SIZE`` kept open, up to ``POOL_OVERFLOW`` more while
#: busy. A server bounds the requests it works on at once by it (``request_threads``), since a
#: request can hold several connections at once and one waiting for a connection that none of the
#: others will give back waits for ever (they all did, at 17 single Device CSRs at once).
POOL_SIZE = 5
POOL_OVERFLOW = 19
#: How many connections one request can hold at once: its held reads (``store.held_reads``), its
#: write transaction, and a read begun while another of its reads is still streaming.
CONNECTIONS_PER_REQUEST = 3
#: Connections left to a server process's own threads (the batch runner's writer, the CRL scheduler).
BACKGROUND_CONNECTIONS = 3


def request_threads() -> int:
    """How many requests a server process works on at once (its thread pool's size): as many as the
    pool can serve whatever each holds (the others wait their turn, in order), with the background's
    connections kept free. Requests here are CPU-bound on a few cores, so this costs no throughput."""
    return max(1, (POOL_SIZE + POOL_OVERFLOW - BACKGROUND_CONNECTIONS) // CONNECTIONS_PER_REQUEST)


def _postgresql_engine(url: str) -> Engine:
    """PostgreSQL with a liveness check that costs nothing on a busy server.

    ``pool_pre_ping`` pings the server at every checkout, and one Device CSR over the web services
    checks out about ten connections: ten extra round trips per request. A connection that was in
    use a moment ago is alive unless the driver already knows it is not (psycopg's ``broken`` and
    ``closed``, free to read); one that sat idle for ``PING_AFTER_IDLE_SECONDS`` (a database
    restart or an idle timeout may have ended it) is pinged as before. Either failure makes the
    pool discard it and hand out a fresh one (SQLAlchemy's ``DisconnectionError`` protocol); a
    connection that dies in between fails its statement, is invalidated, and the next checkout
    gets a new one.
    """
    import time

    from sqlalchemy.exc import DisconnectionError

    # psycopg prepares a statement on a connection at its second use there, not its sixth: smki's
    # statements are a fixed set, and with a pool of connections per process (and the server's
    # processes each with their own) the default left a statement parsed and planned afresh on most
    # of its first twenty or so uses. A statement used once is still never prepared, and a batch's
    # (marked smki.store.driver.PLANNED_WITH_ITS_VALUES) never is: SmkiCursor sends them unprepared.
    from smki.store.pg_cursor import SmkiCursor

    engine = create_engine(url, connect_args={"prepare_threshold": PREPARE_AFTER_USES, "cursor_factory": SmkiCursor},
                           pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW)

    @event.listens_for(engine, "checkin")
    def _checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if getattr(dbapi_connection, "broken", False) or dbapi_connection.closed:
            raise DisconnectionError("the connection was closed")
        since = record.info.get("idle_since")
        if since is not None and time.monotonic() - since > PING_AFTER_IDLE_SECONDS:
            try:
                engine.dialect.do_ping(dbapi_connection)
            except Exception as exc:
                raise DisconnectionError("the connection did not answer a ping") from exc

    return engine


def _sqlite_engine(url: str, synchronous: str) -> Engine:
    engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000}, pool_size=POOL_SIZE,
                           max_overflow=POOL_OVERFLOW)

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        try:
            # Before anything else: the page size of a new database file (of an existing one it cannot
            # change in WAL mode, and this is a no-op). See SQLITE_PAGE_SIZE.
            cursor.execute(f"PRAGMA page_size={SQLITE_PAGE_SIZE}")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={synchronous}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            # Checkpoint every ~64 MB of WAL rather than 4 MB: a checkpoint fsyncs the database,
            # and batch issuance writes a few hundred KB per commit. SQLite counts it in pages,
            # whose size is the database's own (16 KiB in one made while SQLITE_PAGE_SIZE was).
            page_size = cursor.execute("PRAGMA page_size").fetchone()[0]
            cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_BYTES // page_size}")
            cursor.execute("PRAGMA cache_size=-16384")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine
