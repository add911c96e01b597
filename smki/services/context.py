"""An opened smki home: its settings, its store, and (on demand) its key backend.

Every service takes a ``Home``. Interfaces open one per command or per server process; the key
secret (file passphrase or token PIN) is handed in by the interface, which is the only layer that
reads environment variables or prompts for it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from smki.config import Settings, database_url_without_password, load_settings
from smki.domain import CertKind, CertStatus
from smki.errors import ConfigError, NotFound, SmkiError

if TYPE_CHECKING:
    from cryptography import x509

    from smki.keys.base import KeyBackend
    from smki.store import Store


@dataclass
class Home:
    settings: Settings
    store: Store
    secret: bytes | None = None
    _backend: KeyBackend | None = field(default=None, repr=False)
    #: The Device Certificate factory single CSRs are issued with in this process
    #: (``smki.services.device_issuance.in_process_factory``), made on first use.
    device_factory: object | None = field(default=None, repr=False, compare=False)

    def backend(self) -> KeyBackend:
        """The key backend, opened on first use (issuance needs it; searches don't)."""
        if self._backend is None:
            if self.secret is None:
                raise ConfigError("key.secret-missing", "this command needs the CA key passphrase or PIN")
            from smki.keys import open_backend

            self._backend = open_backend(self.settings, self.secret)
        return self._backend

    def reset_backend(self) -> None:
        """Forget the opened key backend (after an error), so the next use opens it afresh."""
        self._backend = None

    def ca_certificate(self, kind: CertKind) -> x509.Certificate:
        """The newest in-use CA certificate of ``kind``, read from the store every time (a key
        ceremony in another process is seen at once); only its parsing is remembered, by its DER."""
        record = self.store.ca_certificate(kind)
        if record is None:
            last = self.store.last_ca_certificate(kind)
            if last is not None:  # not a home without a CA: its certificate was revoked (or retired)
                raise SmkiError("ca.not-in-force", f"no {kind.value} certificate is in force: the last one, "
                                f"{last.serial}, is {CertStatus(last.status).name.lower().replace('_', '-')}; "
                                "nothing it would sign can be issued")
            raise NotFound("ca.not-initialised", f"no {kind.value} certificate: run 'smki ca init' first")
        return _parsed_certificate(record.der)

    @staticmethod
    def parsed_certificate(der: bytes) -> x509.Certificate:
        """A CA certificate this request has read already (``ca_certificate``'s, read ahead),
        parsed once per process like the ones ``ca_certificate`` reads."""
        return _parsed_certificate(der)

    def close(self) -> None:
        self.store.close()


@functools.lru_cache(maxsize=16)
def _parsed_certificate(der: bytes) -> x509.Certificate:
    """A CA certificate parsed once per process (every issuance reads its issuer's). Keyed by the
    whole DER, so a new certificate is a new entry; ``x509.Certificate`` objects are immutable."""
    from cryptography import x509  # not at import: most commands never parse a certificate

    return x509.load_der_x509_certificate(der)


def _schema_for_a_new_home(store: Store) -> None:
    """The key ceremony's store: an empty database gets this smki's schema, a current one is used as
    it is (its own check refuses one that holds a CA already), and one at any other revision is
    refused before anything is changed: it is another home's store, and ``ca init`` migrated it
    (unaudited, mid rolling upgrade) and only then refused (found by an exploratory run)."""
    status = store.schema_status()
    if status.current is None:
        store.migrate()
    elif not status.up_to_date:
        raise SmkiError("ca.exists", f"the database already holds an smki store (schema {status.current}, this "
                                     f"smki's {status.head}): a key ceremony makes a home in an empty database")


#: What a key ceremony leaves in a home beside its database: with any of them there, a home whose
#: database file is gone lost its register, not its CA.
_CA_MATERIAL = ("root.pem", "organisation-ca.pem", "device-ca.pem", "keys")


def require_database_file(settings: Settings) -> None:
    """That a home on the default SQLite database has its file, else a refusal naming what to do.

    Without a file, a home holding no CA was never initialised (``home.not-initialised``: run
    ``smki ca init``). One holding CA certificates or keys has lost its database
    (``home.database-missing``): ``ca init`` would only refuse (the keys exist) and ``db upgrade``
    would build an empty register beside the CA, so this names the way back, ``smki backup restore``.
    Nothing here creates the file, as opening it with SQLite would."""
    if not settings.uses_default_database or settings.default_database_path.exists():
        return
    found = [name for name in _CA_MATERIAL if (settings.home / name).exists()]
    if found:
        raise NotFound("home.database-missing",
                       f"{settings.home} holds a CA ({', '.join(found)}) but not its database "
                       f"{settings.default_database_path.name}: restore the home from a backup ('smki backup "
                       f"restore'); 'smki ca init' there would make another CA")
    raise NotFound("home.not-initialised",
                   f"{settings.home} holds no smki home: run 'smki ca init --home {settings.home}' first")


def open_home(home: Path | str, secret: bytes | None = None, *, migrate: bool = False,
              create: bool = False, given_database_url: str = "", new_store: bool = False) -> Home:
    """Open the home directory's settings and store.

    The schema must be current (``store.schema-outdated`` otherwise): only the key ceremony and
    ``smki db upgrade`` pass ``migrate=True``; the key ceremony passes ``new_store=True`` (an empty
    database gets the schema, any other revision is refused untouched).

    A home whose database is the default SQLite file, when that file does not exist, was never
    initialised: that is ``home.not-initialised`` naming ``smki ca init``, rather than SQLite's
    "unable to open database file" (or, worse, an empty database created for a register that then
    has no CA). Only the key ceremony opens a home with ``create=True``, and ``given_database_url`` the
    database URL it was given: when the home's settings name that database without its password
    (``smki.toml`` never holds one, :func:`smki.config.database_url_without_password`), it is
    opened with the URL as given.
    """
    from smki.store import Store

    settings = load_settings(home)
    if given_database_url and settings.database_url == database_url_without_password(given_database_url):
        settings = replace(settings, database_url=given_database_url)
    from smki.ca import p256_verify

    p256_verify.use(settings.csr_signature_check)  # how this process checks CSRs' self-signatures
    if not create:
        require_database_file(settings)
    store = Store.open(settings.resolved_database_url)
    try:
        if new_store:
            _schema_for_a_new_home(store)
        elif migrate:
            store.migrate()
        else:
            store.require_current_schema()
    except BaseException:
        store.close()
        raise
    return Home(settings=settings, store=store, secret=secret)
