"""One configuration reference (issue 12, point 5): the model, its document, show and check."""

from __future__ import annotations

import tomllib
from dataclasses import fields
from pathlib import Path

import pytest

from smki.config import Settings, load_settings
from smki.errors import ConfigError
from smki.interfaces.api.settings import ApiSettings
from smki.services.capacity import DEFAULT_LIMITS
from smki.settings_model import BY_KEY, SETTINGS, check_document, render_markdown, render_toml
from tests.cli.helpers import smki, smki_env

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_docs_configuration_md_is_current() -> None:
    assert DOC.read_text(encoding="utf-8") == render_markdown(), (
        "docs/configuration.md is stale: run python -m smki.settings_model docs/configuration.md")


def test_the_model_covers_every_field_with_the_components_defaults() -> None:
    for f in fields(Settings):
        if f.name in ("home", "extra"):
            continue
        default = list(f.default) if isinstance(f.default, tuple) else f.default
        assert BY_KEY[f.name.replace("_", "-")].default == default, f.name
    api = ApiSettings()
    assert BY_KEY["api.gateway"].default == str(api.gateway)
    assert api.spoti is not None and BY_KEY["api.spoti"].default == str(api.spoti)
    assert BY_KEY["api.server-names"].default == list(api.server_names)
    for name in ("workers", "batch_workers", "max_body", "max_batch_body", "repository_apikey", "batch_poll",
                 "batch_lease"):
        assert BY_KEY[f"api.{name.replace('_', '-')}"].default == getattr(api, name), name
    for name, limit in DEFAULT_LIMITS.items():
        assert BY_KEY[f"capacity.{name}.capacity"].default == limit.capacity
        assert BY_KEY[f"capacity.{name}.period"].default == limit.period
        assert BY_KEY[f"capacity.{name}.off-peak-period"].default == limit.off_peak_period


def test_the_written_smki_toml_has_every_section_and_every_key(tmp_path: Path) -> None:
    text = render_toml()
    assert tomllib.loads(text)  # valid TOML as written; the commented sections parse when uncommented
    uncommented = "\n".join(line[1:] if line.startswith("#") and not line.startswith("# ") else line
                            for line in text.splitlines())
    document = tomllib.loads(uncommented.replace("#batch-workers =", "").replace("batch-workers =\n", "\n")
                             .replace("off-peak-period =\n", "\n"))
    check_document(document)
    for setting in SETTINGS:
        if setting.toml and not setting.deprecated:  # a deprecated key is read, never written
            assert f"{setting.name} =" in text, setting.key
    for section in ("[api]", "[capacity]", "[capacity.batch-csrs]"):
        assert f"#{section}" in text


@pytest.mark.parametrize(("snippet", "named"), [
    ("databse-url = 'x'", "'databse-url'"),
    ("[api]\nworkres = 2", "'api.workres'"),
    ("[api]\nworkers = 'two'", "api.workers: expected integer"),
    ("[api]\nworkers = 0", "api.workers: must be at least 1"),
    ("[api]\ngateway = 'nowhere'", "api.gateway: must be host:port"),
    ("log-level = 'loud'", "log-level: must be one of"),
    ("[capacity.batch-csrs]\ncapacity = -1", "capacity.batch-csrs.capacity: must be at least 0"),
    ("[capacity.batch-csrs]\ncapcity = 1", "'capacity.batch-csrs.capcity'"),
    ("[portal]\nx = 1", "'portal'"),
    ("[role-usages]\n'6' = ['DS']", "role-usages.6: a role is two hex digits"),
    ("[role-usages]\n'06' = ['XX']", "role-usages.06: expected a list"),
])
def test_config_check_names_the_bad_key(tmp_path: Path, snippet: str, named: str) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "smki.toml").write_text(snippet + "\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(home)
    assert named in caught.value.message
    result = smki(["config", "check", "--home", str(home)], smki_env(f"sqlite:///{tmp_path / 'x.db'}"))
    assert result.code == 1 and named in result.err and len(result.err.strip().splitlines()) == 1


def test_config_show_and_check_on_a_real_home(tmp_path: Path, database_url: str) -> None:
    env = smki_env(database_url, SMKI_LOG_LEVEL="debug")
    home = tmp_path / "home"
    assert smki(["ca", "init", "--home", str(home)], env).code == 0
    text = (home / "smki.toml").read_text()
    (home / "smki.toml").write_text(text.replace("#[api]", "[api]\nrepository-apikey = \"hunter2-apikey\"\n"
                                                 "admin = \"127.0.0.1:9100\"", 1))
    checked = smki(["config", "check", "--home", str(home)], env)
    assert checked.code == 0 and checked.out.strip().endswith("smki.toml: OK")
    shown = smki(["config", "show", "--home", str(home)], env)
    assert shown.code == 0, shown.err
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:4]]
            for line in shown.out.splitlines() if line.count("│") >= 4}
    assert rows["api.admin"] == ["127.0.0.1:9100", "smki.toml"]
    assert rows["api.repository-apikey"] == ["[redacted]", "smki.toml"]
    assert rows["key-passphrase"] == ["[redacted]", "env SMKI_KEY_PASSPHRASE"]
    assert rows["log-level"] == ["debug", "env SMKI_LOG_LEVEL"]
    assert rows["api.workers"] == ["1", "default"]
    assert "hunter2-apikey" not in shown.out and env["SMKI_KEY_PASSPHRASE"] not in shown.out
