"""Deployment configuration: OIDs, CA names, validity periods, the database and the key backend.

Spec §4.3 and §6: policy OIDs, hwType, CA names and validity periods are not verified public facts,
so they are configuration, with the test-environment values of the reference certificates as
defaults. A home directory (``--home``, default ``./smki-data``) holds ``smki.toml``, the database
(SQLite by default) and the file key store; ``SMKI_DATABASE_URL`` overrides the database.

:class:`Settings` is the typed result of :func:`smki.settings_model.resolve` (the one parser and
the source of every default): the top-level settings as fields, every sectioned key
(``api.workers``, ``capacity.batch-csrs.period``, ``batches.window``, the ``[role-usages]`` and
``[eligibility]`` tables) in ``sections``, and where each value came from in ``sources``.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from smki.domain import ROLE_USAGES, RemotePartyRole, Usage
from smki.errors import ConfigError
from smki.settings_model import default as _default
from smki.settings_model import resolve, section_defaults, sectioned

CONFIG_FILE = "smki.toml"
#: The hwType OIDs of the DCC's test Device Certificates (spec §7.4): the Device CSRs smki accepts
#: by default carry one of them, and the certificate carries the CSR's.
DEFAULT_HW_TYPES: tuple[str, ...] = _default("hw-type-oids")
DEFAULT_HOME = Path(_default("home"))


@dataclass(frozen=True)
class Settings:
    """Everything a deployment may change; the defaults are the spec's test-environment values."""

    home: Path = DEFAULT_HOME
    database_url: str = _default("database-url")  # empty: sqlite:///<home>/smki.db
    key_backend: str = _default("key-backend")  # "file" or "pkcs11"
    pkcs11_module: str = _default("pkcs11-module")
    pkcs11_token: str = _default("pkcs11-token")
    pkcs11_session_keys: bool = _default("pkcs11-session-keys")  # per-session copies of the key (docs/hsm.md)

    device_policy_oid: str = _default("device-policy-oid")
    organisation_policy_oid: str = _default("organisation-policy-oid")
    # The CA certificates carry the union of the policies they may issue under [design].
    #: hwTypes a Device CSR may carry (spec §7.4); any other is refused (``csr.hw-type``).
    hw_type_oids: tuple[str, ...] = DEFAULT_HW_TYPES

    root_name: str = _default("root-name")
    organisation_ca_name: str = _default("organisation-ca-name")
    device_ca_name: str = _default("device-ca-name")

    root_validity_years: int = _default("root-validity-years")
    ca_validity_years: int = _default("ca-validity-years")  # the DCC test Organisation CA: 2015 → 2040 (§7.5)
    organisation_validity_years: int = _default("organisation-validity-years")

    crl_next_update_hours: int = _default("crl-next-update-hours")
    arl_next_update_days: int = _default("arl-next-update-days")

    evidence_basis: str = _default("evidence-basis")  # or "registered-user" (spec §2.1)
    #: Refuse an Organisation CSR whose key usage its role does not have (spec §7.3, ``csr.role-usage``);
    #: the table is ``smki.domain.ROLE_USAGES`` unless a ``[role-usages]`` section replaces it.
    enforce_role_usages: bool = _default("enforce-role-usages")
    #: An expired or not-in-use Organisation Certificate may be re-issued for the same key and
    #: subject (spec §7.6); every other reuse of a certified key is ``csr.duplicate``.
    reissue_organisation_same_key: bool = _default("reissue-organisation-same-key")
    #: SEC L3.16 Eligible Subscribers on batched and Portal Device CSRs (rule
    #: ``device.eligible-subscriber``); its table is the default unless ``[eligibility]`` changes rows.
    eligible_subscriber_check: bool = _default("eligible-subscriber-check")
    #: How a Device CSR's self-signature is verified (``smki.ca.p256_verify``): "libcrypto" or "cryptography".
    csr_signature_check: str = _default("csr-signature-check")

    log_level: str = _default("log-level")  # debug, info, warning, error, critical
    log_format: str = _default("log-format")  # json, text, or auto (text on a terminal, else json)

    #: Every sectioned key's typed value (``api.workers``, ``capacity.<limit>.period``, …) and the
    #: ``role-usages`` / ``eligibility`` tables: what ``[api]``, ``[capacity]``, ``[batches]`` consumers read.
    sections: Mapping[str, Any] = field(default_factory=section_defaults)
    #: Where each value came from (``default``, ``smki.toml``, ``env X``, ``flag --x``).
    sources: Mapping[str, str] = field(default_factory=dict)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.default_database_path.resolve()}"

    @property
    def uses_default_database(self) -> bool:
        """True when the database is the SQLite file in the home (no URL in the environment or config)."""
        return not self.database_url

    @property
    def default_database_path(self) -> Path:
        return self.home / "smki.db"

    @property
    def role_usages(self) -> dict[RemotePartyRole, frozenset[Usage]] | None:
        """The role → usages table Organisation CSRs are held to, or None when it is not enforced.

        A ``[role-usages]`` section maps roles as two hex digits to lists of usages, e.g.
        ``"06" = ["DS", "KA"]``; roles it leaves out keep the default (spec §7.3).
        """
        if not self.enforce_role_usages:
            return None
        table = dict(ROLE_USAGES)
        for role_text, usages in self.sections.get("role-usages", {}).items():  # checked by the model
            table[RemotePartyRole(int(role_text, 16))] = frozenset(Usage(usage) for usage in usages)
        return table

    def configured(self, document: Mapping[str, Any]) -> Settings:
        """These settings with ``document`` in ``smki.toml`` instead (checked and typed by the settings
        model): each table it names replaces that section, e.g. ``{"capacity": {"enabled": False}}``."""
        resolved = resolve(document, {}, None)
        tables = {name for name, value in document.items() if isinstance(value, Mapping)}
        sections = {key: value for key, value in self.sections.items() if key.split(".")[0] not in tables}
        sections |= {key: value for key, value in sectioned(resolved.values).items() if key.split(".")[0] in tables}
        top = {name: resolved.values[key] for key, name in _FIELDS.items() if key in document}
        return replace(self, **top, sections=sections)

    @property
    def keys_dir(self) -> Path:
        return self.home / "keys"

    @property
    def config_path(self) -> Path:
        return self.home / CONFIG_FILE


#: The top-level settings that are fields, by key (the others are read where used: secrets, the actor).
_FIELDS = {f.name.replace("_", "-"): f.name for f in fields(Settings) if f.name not in ("home", "sections", "sources")}


def read_document(path: Path) -> dict[str, Any]:
    """``smki.toml`` parsed (empty when there is none); not yet checked (:func:`load_settings` does)."""
    if not path.exists():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError("config.invalid", f"cannot read {path}: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError("config.invalid", f"cannot read {path}: not UTF-8 text (byte {exc.start})") from exc


def load_settings(home: Path | str = DEFAULT_HOME, *, environ: Mapping[str, str] | None = None,
                  flags: Mapping[str, Any] | None = None) -> Settings:
    """``<home>/smki.toml``, the environment (default ``os.environ``) and ``flags`` (setting key →
    the flag's value, None when not given) through the settings model; a bad key or value is an
    error naming it, never silently ignored."""
    home_path = Path(home)
    path = home_path / CONFIG_FILE
    resolved = resolve(read_document(path), os.environ if environ is None else environ, flags, str(path))
    values = resolved.values
    if values["key-backend"] == "pkcs11":  # settings that only mean something together
        missing = [key for key in ("pkcs11-module", "pkcs11-token") if not values[key]]
        if missing:
            raise ConfigError("config.invalid", f"key-backend = \"pkcs11\" needs {' and '.join(missing)} "
                                                "(the CA keys' module and token)")
    top = {name: values[key] for key, name in _FIELDS.items()}
    return Settings(home=home_path, **top, sections=sectioned(values), sources=resolved.sources)


def database_url_password(url: str) -> str:
    """The password a database URL carries: in its userinfo, or (as libpq and psycopg also take it)
    its ``password`` query parameter; empty when it has none (or no URL is given)."""
    if not url:
        return ""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    given = parsed.query.get("password")
    from_query = given if isinstance(given, str) else given[-1] if given else ""
    return str(parsed.password or from_query or "")


def database_url_without_password(url: str) -> str:
    """``url`` with its password taken out (userinfo and ``password`` query parameter), the rest
    as given: what smki writes into ``smki.toml``, which is backed up, copied to other nodes and
    readable by whoever administers the home. The password then comes from where PostgreSQL's own
    tools look for one (``~/.pgpass``, ``PGPASSFILE``) or from ``SMKI_DATABASE_URL_FILE``.

    ``URL.set(password=None)`` would leave the password in place (``set`` ignores ``None``): only
    ``_replace`` removes it."""
    if not database_url_password(url):
        return url
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    return parsed.difference_update_query(["password"])._replace(password=None).render_as_string(hide_password=False)


def password_bearing_url_in(config: Path) -> str:
    """The ``database-url`` the ``smki.toml`` at ``config`` holds when it carries a password (a
    home written before smki kept passwords out of the file), else ``""``: what ``config check``
    and ``serve`` warn of, and what ``backup create`` leaves out of its archive."""
    written = read_document(config).get("database-url")
    return written if isinstance(written, str) and database_url_password(written) else ""


def write_default_config(settings: Settings) -> Path:
    """Write the settings in force as a commented ``smki.toml`` with every section, so a deployment
    sees (and can edit) every value (:func:`smki.settings_model.render_toml`)."""
    from smki.settings_model import ENVIRONMENT_SOURCES, render_toml

    # A value from the environment or a file it names (e.g. SMKI_DATABASE_URL or
    # SMKI_DATABASE_URL_FILE, which may hold a password) stays there.
    values = {key: getattr(settings, name) for key, name in _FIELDS.items()
              if not settings.sources.get(key, "").startswith(ENVIRONMENT_SOURCES)}
    if values.get("database-url"):  # never a password in smki.toml (see database_url_without_password)
        values["database-url"] = database_url_without_password(values["database-url"])
    settings.home.mkdir(parents=True, exist_ok=True)
    settings.config_path.write_text(render_toml(values), encoding="utf-8")
    return settings.config_path
