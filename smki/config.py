"""Deployment configuration: OIDs, CA names, validity periods, the database and the key backend.

Spec §4.3 and §6: policy OIDs, hwType, CA names and validity periods are not verified public facts,
so they are configuration, with the test-environment values of the reference certificates as
defaults. A home directory (``--home``, default ``./smki-data``) holds ``smki.toml``, the database
(SQLite by default) and the file key store; ``SMKI_DATABASE_URL`` overrides the database.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from smki.domain import ROLE_USAGES, RemotePartyRole, Usage
from smki.errors import ConfigError

CONFIG_FILE = "smki.toml"
#: The hwType OIDs of the DCC's test Device Certificates (spec §7.4): the Device CSRs smki accepts
#: by default carry one of them, and the certificate carries the CSR's.
DEFAULT_HW_TYPES: tuple[str, ...] = ("1.2.826.0.1.8641679.1.2.2.1", "1.2.826.0.1372.1.1.2.1")
DEFAULT_HOME = Path("smki-data")


@dataclass(frozen=True)
class Settings:
    """Everything a deployment may change; the defaults are the spec's test-environment values."""

    home: Path = DEFAULT_HOME
    database_url: str = ""  # empty: sqlite:///<home>/smki.db
    key_backend: str = "file"  # "file" or "pkcs11"
    pkcs11_module: str = ""
    pkcs11_token: str = ""
    pkcs11_session_keys: bool = True  # sign with per-session copies of the key (docs/hsm.md)

    device_policy_oid: str = "1.2.826.0.1.1800000.1.2.1.4"
    organisation_policy_oid: str = "1.2.826.0.1.8641679.1.2.1.4"
    # The CA certificates carry the union of the policies they may issue under [design].
    #: hwTypes a Device CSR may carry (spec §7.4); any other is refused (``csr.hw-type``).
    hw_type_oids: tuple[str, ...] = DEFAULT_HW_TYPES

    root_name: str = "SMKI Root"
    organisation_ca_name: str = "Z1"
    device_ca_name: str = "E357"

    root_validity_years: int = 25
    ca_validity_years: int = 25  # the DCC test Organisation CA: 2015-10-29 → 2040-10-28 (spec §7.5)
    organisation_validity_years: int = 10

    crl_next_update_hours: int = 24
    arl_next_update_days: int = 30

    evidence_basis: str = "installation-need"  # or "registered-user" (spec §2.1)
    #: Refuse an Organisation CSR whose key usage its role does not have (spec §7.3, ``csr.role-usage``);
    #: the table is ``smki.domain.ROLE_USAGES`` unless a ``[role-usages]`` section replaces it.
    enforce_role_usages: bool = True
    #: An expired or not-in-use Organisation Certificate may be re-issued for the same key and
    #: subject (spec §7.6); every other reuse of a certified key is ``csr.duplicate``.
    reissue_organisation_same_key: bool = True
    #: SEC L3.16 Eligible Subscribers on batched and Portal Device CSRs (rule
    #: ``device.eligible-subscriber``); its table is the default unless ``[eligibility]`` changes rows.
    eligible_subscriber_check: bool = True

    log_level: str = "info"  # debug, info, warning, error, critical
    log_format: str = "auto"  # json, text, or auto (text on a terminal, else json)

    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def resolved_database_url(self) -> str:
        env = os.environ.get("SMKI_DATABASE_URL")
        if env:
            return env
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.default_database_path.resolve()}"

    @property
    def uses_default_database(self) -> bool:
        """True when the database is the SQLite file in the home (no URL in the environment or config)."""
        return not (os.environ.get("SMKI_DATABASE_URL") or self.database_url)

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
        for role_text, usages in self.extra.get("role-usages", {}).items():
            try:
                role = RemotePartyRole(int(role_text, 16))
                table[role] = frozenset(Usage(usage) for usage in usages)
            except (TypeError, ValueError) as exc:
                raise ConfigError("config.invalid", f"[role-usages] {role_text!r}: {exc}") from exc
        return table

    @property
    def keys_dir(self) -> Path:
        return self.home / "keys"

    @property
    def config_path(self) -> Path:
        return self.home / CONFIG_FILE


_SIMPLE_FIELDS = {f.name for f in fields(Settings)} - {"home", "extra"}
_LIST_FIELDS = {"hw_type_oids"}


def load_settings(home: Path | str = DEFAULT_HOME) -> Settings:
    """Read ``<home>/smki.toml`` if it exists; unknown keys are an error, not silently ignored."""
    home_path = Path(home)
    settings = Settings(home=home_path)
    path = settings.config_path
    if not path.exists():
        return settings
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError("config.invalid", f"cannot read {path}: {exc}") from exc
    from smki.settings_model import check_document

    check_document(data, str(path))
    values: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        if name == "hw_type_oid" and isinstance(value, str):  # before spec §7.4: a single hwType
            values["hw_type_oids"] = (value,)
        elif name in _LIST_FIELDS:
            if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
                raise ConfigError("config.invalid", f"{path}: {key} must be a non-empty list of strings")
            values[name] = tuple(value)
        elif name in _SIMPLE_FIELDS:
            values[name] = value
        elif isinstance(value, dict):
            extra[key] = value  # sections owned by other components (e.g. [capacity], [api])
        else:
            raise ConfigError("config.unknown-key", f"{path}: unknown setting {key!r}")
    return replace(settings, **values, extra=extra)


def write_default_config(settings: Settings) -> Path:
    """Write the settings in force as a commented ``smki.toml`` with every section, so a deployment
    sees (and can edit) every value (:func:`smki.settings_model.render_toml`)."""
    from smki.settings_model import render_toml

    values = {f.name.replace("_", "-"): getattr(settings, f.name) for f in fields(Settings)
              if f.name not in ("home", "extra")}
    settings.home.mkdir(parents=True, exist_ok=True)
    settings.config_path.write_text(render_toml(values), encoding="utf-8")
    return settings.config_path
