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

from smki.errors import ConfigError

CONFIG_FILE = "smki.toml"
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
    hw_type_oid: str = "1.2.826.0.1.8641679.1.2.2.1"

    root_name: str = "SMKI Root"
    organisation_ca_name: str = "Z1"
    device_ca_name: str = "E357"

    root_validity_years: int = 25
    ca_validity_years: int = 20
    organisation_validity_years: int = 10

    crl_next_update_hours: int = 24
    arl_next_update_days: int = 30

    evidence_basis: str = "installation-need"  # or "registered-user" (spec §2.1)

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
    def keys_dir(self) -> Path:
        return self.home / "keys"

    @property
    def config_path(self) -> Path:
        return self.home / CONFIG_FILE


_SIMPLE_FIELDS = {f.name for f in fields(Settings)} - {"home", "extra"}


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
    values: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        if name in _SIMPLE_FIELDS:
            values[name] = value
        elif isinstance(value, dict):
            extra[key] = value  # sections owned by other components (e.g. [capacity], [api])
        else:
            raise ConfigError("config.unknown-key", f"{path}: unknown setting {key!r}")
    return replace(settings, **values, extra=extra)


def write_default_config(settings: Settings) -> Path:
    """Write the settings in force as ``smki.toml`` so a deployment sees (and can edit) every value."""
    lines = ["# smki configuration. Defaults are the SMKI test-environment values (spec §4).", ""]
    for f in fields(Settings):
        if f.name in ("home", "extra"):
            continue
        value = getattr(settings, f.name)
        if isinstance(value, str):
            lines.append(f'{f.name.replace("_", "-")} = "{value}"')
        elif isinstance(value, bool):  # TOML spells them true / false
            lines.append(f'{f.name.replace("_", "-")} = {str(value).lower()}')
        else:
            lines.append(f'{f.name.replace("_", "-")} = {value}')
    settings.home.mkdir(parents=True, exist_ok=True)
    settings.config_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return settings.config_path
