"""One configuration reference (issue 12, point 5): the model, its document, show and check."""

from __future__ import annotations

import json
import tomllib
from dataclasses import MISSING, fields
from datetime import time
from pathlib import Path

import pytest

from smki.config import Settings, load_settings
from smki.errors import ConfigError
from smki.interfaces.api.settings import ApiSettings, api_settings
from smki.services.batch_lifecycle import batch_policy
from smki.services.capacity import DEFAULT_LIMITS, Limit, capacity_settings
from smki.services.context import Home
from smki.settings_model import BY_KEY, SETTINGS, check_document, render_markdown, render_toml
from tests.cli.helpers import smki, smki_env

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_docs_configuration_md_is_current() -> None:
    assert DOC.read_text(encoding="utf-8") == render_markdown(), (
        "docs/configuration.md is stale: run python -m smki.settings_model docs/configuration.md")


def test_the_model_covers_every_field_and_is_the_only_parser() -> None:
    """Every Settings field is a setting of the model, and no component parses a section itself:
    the [api], [capacity] and [batches] values reach their consumers only through the model."""
    for f in fields(Settings):
        if f.name in ("home", "sections", "sources"):
            continue
        default = f.default_factory() if f.default_factory is not MISSING else f.default
        assert BY_KEY[f.name.replace("_", "-")].default == (list(default) if isinstance(default, tuple) else default)
    root = Path(__file__).resolve().parents[2] / "smki"
    for path in root.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "settings.extra" not in text and 'get("api"' not in text, path
        assert "tomllib.loads" not in text or path.name == "config.py", path  # smki.toml is read once


def test_api_capacity_and_batches_come_from_the_file_the_environment_and_flags(tmp_path: Path) -> None:
    (tmp_path / "smki.toml").write_text(
        '[api]\nworkers = 3\nspoti-enabled = false\nadmin = "127.0.0.1:9100"\ncrl-check-seconds = 7\n'
        'body-timeout = 12.5\nhead-timeout = 20\nhandshake-timeout = 4.5\nsend-timeout = 90\n'
        '[capacity.batch-csrs]\ncapacity = 10\nperiod = 60\n[capacity.my-limit]\ncapacity = 5\nreference = "mine"\n'
        '[capacity.portal-adhoc]\nenabled = false\n[batches]\nwindow = "20:00-08:00"\nauto-approve-max = 9\n')
    settings = load_settings(tmp_path, environ={"SMKI_LOG_LEVEL": "debug"},
                             flags={"api.workers": 4, "api.gateway": "0.0.0.0:1", "api.batch-workers": None})
    api = api_settings(settings)
    assert (api.workers, str(api.gateway), api.spoti, str(api.admin), api.crl_check_seconds, api.body_timeout) == (
        4, "0.0.0.0:1", None, "127.0.0.1:9100", 7.0, 12.5)
    assert (api.head_timeout, api.handshake_timeout, api.send_timeout) == (20, 4.5, 90)
    assert settings.log_level == "debug"
    assert settings.sources["api.workers"] == "flag --workers" and settings.sources["api.admin"] == "smki.toml"
    assert settings.sources["log-level"] == "env SMKI_LOG_LEVEL"
    home = Home(settings=settings, store=None)  # type: ignore[arg-type]
    limits = capacity_settings(home).limits
    assert limits["batch-csrs"] == Limit("batch-csrs", 10, 60, None, DEFAULT_LIMITS["batch-csrs"].reference)
    assert limits["my-limit"] == Limit("my-limit", 5, 86400, None, "mine")
    assert "portal-adhoc" not in limits and limits["adhoc-service"] == DEFAULT_LIMITS["adhoc-service"]
    policy = batch_policy(settings)
    assert policy.auto_approve_max == 9 and policy.window == (time(20), time(8))
    assert api_settings(Settings()) == ApiSettings()  # the defaults are the model's


@pytest.mark.parametrize(("environ", "flags", "named"), [
    ({"SMKI_LOG_LEVEL": "loud"}, {}, "SMKI_LOG_LEVEL (log-level): must be one of"),
    ({"SMKI_LOG_FORMAT": "xml"}, {}, "SMKI_LOG_FORMAT (log-format): must be one of"),
    ({}, {"api.gateway": "nowhere"}, "--gateway (api.gateway): must be host:port"),
    ({}, {"api.admin": "127.0.0.1:99999"}, "--admin (api.admin): must be host:port"),
    ({}, {"api.workers": 0}, "--workers (api.workers): must be at least 1"),
    ({}, {"log-level": "chatty"}, "--log-level (log-level): must be one of"),
])
def test_environment_and_flags_are_checked_by_the_model(tmp_path: Path, environ: dict[str, str],
                                                         flags: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path, environ=environ, flags=flags)
    assert named in caught.value.message


def test_serve_refuses_a_bad_flag_or_variable_naming_it(tmp_path: Path) -> None:
    env = smki_env(f"sqlite:///{tmp_path / 'x.db'}")
    result = smki(["serve", "--home", str(tmp_path), "--admin", "nowhere"], env)
    assert result.code == 1 and "--admin (api.admin): must be host:port" in result.err
    assert len(result.err.strip().splitlines()) == 1
    result = smki(["config", "check", "--home", str(tmp_path)], {**env, "SMKI_LOG_FORMAT": "xml"})
    assert result.code == 1 and "SMKI_LOG_FORMAT (log-format)" in result.err


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
    ("[capacity]\nenabled = 'no'", "capacity.enabled: expected boolean"),
    ("[capacity.my-limit]\nperiod = 'daily'", "capacity.my-limit.period: expected number"),
    ("[api]\nspoti-enabled = 1", "api.spoti-enabled: expected boolean"),
    ("[api]\nserver-names = []", "api.server-names: must not be empty"),
    ("[api]\nbatch-poll = 0", "api.batch-poll: must be at least"),
    ("[api]\nbody-timeout = 0", "api.body-timeout: must be at least 0.1"),
    ("[api]\nbody-timeout = 'slow'", "api.body-timeout: expected number"),
    ("[api]\nhead-timeout = 0", "api.head-timeout: must be at least 0.1"),
    ("[api]\nhandshake-timeout = 301", "api.handshake-timeout: must be at most 300"),
    ("[api]\nhandshake-timeout = 'soon'", "api.handshake-timeout: expected number"),
    ("[api]\nsend-timeout = -1", "api.send-timeout: must be at least 0.1"),
    ("[api]\nadmin = '127.0.0.1'", "api.admin: must be host:port"),
    ("[batches]\nwindow = '8pm-8am'", "batches.window: must be HH:MM-HH:MM"),
    ("[batches]\nauto-approve-max = -1", "batches.auto-approve-max: must be at least 0"),
    ("hw-type-oids = []", "hw-type-oids: must not be empty"),
    ("[role-usages]\n'7E' = ['DS']", "role-usages.7E: not a Remote Party Role"),
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
    as_json = smki(["config", "show", "--json", "--home", str(home)], env)
    assert as_json.code == 0, as_json.err
    by_key = {row["key"]: (row["value"], row["from"]) for row in json.loads(as_json.out)}
    assert by_key["api.admin"] == ("127.0.0.1:9100", "smki.toml")
    assert by_key["key-passphrase"] == ("[redacted]", "env SMKI_KEY_PASSPHRASE")
    assert env["SMKI_KEY_PASSPHRASE"] not in as_json.out and "hunter2-apikey" not in as_json.out
    as_csv = smki(["config", "show", "--csv", "--home", str(home)], env)
    assert as_csv.out.splitlines()[0] == "key,value,from" and "api.workers,1,default" in as_csv.out.splitlines()
