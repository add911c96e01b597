"""Issue 14 point 2: output scripts can rely on (``--json``, ``--csv``, whole identifiers), one-line
usage errors with documented exit statuses, validated fixed choices, and an atomic ``ca init``.

Run in-process through ``main.run`` (the ``run`` fixture of ``test_ra_console``)."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import get_args

import pytest

from smki.interfaces.cli import cert_cmd, main, populate_cmd, ra_batches_cmd, revoke_cmd
from tests.cli.conftest import Run
from tests.cli.helpers import Result
from tests.cli.test_ra_console import _setup, ok


def one_line(result: Result) -> str:
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.err and "╭" not in result.err, result.err
    return lines[0]


def test_usage_errors_are_one_line_with_exit_status_2(run: Run, tmp_path: Path) -> None:
    bad_route = run("request", "org", str(tmp_path / "x.csr"), "--out", str(tmp_path / "x.pem"), "--party", "P1",
                    "--aro", "A1", "--route", "operator")
    line = one_line(bad_route)
    assert bad_route.code == main.EXIT_USAGE == 2
    assert line.startswith("error: usage: ") and "'gateway'" in line and "'spoti'" in line
    assert line.endswith("(see 'smki request org --help')")
    for args in (("party", "show"), ("party", "show", "P1", "--bogus"), ("nonsense",),
                 ("credential", "list", "--kind", "robot")):
        result = run(*args)
        assert result.code == 2 and one_line(result).startswith("error: usage: "), (args, result)
    assert "'aro'" in run("credential", "list", "--kind", "robot").err  # the choices are listed


def test_a_misspelt_registered_role_is_refused_naming_the_choices(run: Run) -> None:
    _setup(run)
    result = run("party", "set-status", "P1", "--registered-role", "importsupplier", "--as", "op1")
    assert result.code == 1
    line = one_line(result)
    assert line.startswith("error: ra.bad-registered-role: 'importsupplier'") and "import-supplier" in line
    assert json.loads(ok(run, "party", "show", "P1", "--json"))["registered_user_roles"] == []
    ok(run, "party", "set-status", "P1", "--registered-role", "Import Supplier", "--as", "op1")
    assert json.loads(ok(run, "party", "show", "P1", "--json"))["registered_user_roles"] == ["import-supplier"]


def test_ra_propose_exits_3_when_the_rules_refuse(run: Run) -> None:
    _setup(run)  # asserts the refusing proposal's status itself
    app = ok(run, "apply", "org", "--party", "P1", "--as", "op1").strip()
    ok(run, "party", "entity", "P1", "90B3D51F30010000", "--role", "2", "--as", "op1")
    ok(run, "aro", "verify", "A1", "--check", "passport", "--as", "op1")
    ok(run, "aro", "screen", "A1", "--date", "2020-01-03", "--as", "op1")
    assert run("ra", "propose", app, "--as", "op1").code in (0, main.EXIT_PROPOSAL_REFUSED)


def test_json_and_csv_carry_full_values(run: Run) -> None:
    app = _setup(run)
    party = json.loads(ok(run, "party", "show", "P1", "--json"))
    assert party["party_id"] == "P1" and party["srept_passed"] == "2019-06-01"
    assert party["gateway_connections"] == ["GW-1"] and party["subscriptions"]["device"] == "applied"
    assert [(p["kind"], p["value"], p["valid_until"]) for p in party.pop("history")] == [
        ("gateway-connection", "GW-1", None)]  # show adds the periods' history to what list shows
    parties = json.loads(ok(run, "party", "list", "--json"))
    assert [p["party_id"] for p in parties] == ["P1"] and parties[0] == party
    rows = list(csv.DictReader(io.StringIO(ok(run, "party", "list", "--csv"))))
    assert rows[0]["party"] == "P1" and rows[0]["gateway"] == "GW-1" and rows[0]["device"] == "applied"
    staff = json.loads(ok(run, "staff", "list", "--json"))
    assert {s["staff_id"]: s["roles"] for s in staff} == {"op1": ["ra-operator"], "ap1": ["ra-approver"],
                                                          "aud": ["auditor"]}
    aros = json.loads(ok(run, "aro", "list", "--json"))
    assert aros[0]["aro_id"] == "A1" and aros[0]["party_id"] == "P1" and aros[0]["status"] == "active"
    queue = json.loads(ok(run, "ra", "queue", "--json"))
    assert [(q["application_id"], q["status"]) for q in queue] == [(int(app), "proposed")]
    assert queue[0]["proposal"]["outcome"] == "refuse"
    explained = json.loads(ok(run, "ra", "explain", app, "--json"))
    assert explained["proposed_by"] == "op1" and explained["decision"] is None
    cas = json.loads(ok(run, "ca", "show", "--json"))
    assert [c["ca"] for c in cas] == ["root", "org-ca", "device-ca"] and all(len(c["serial"]) == 32 for c in cas)
    serial = cas[0]["serial"]
    shown = json.loads(ok(run, "cert", "show", serial, "--json"))
    assert shown["serial"] == serial and shown["status"] == "I"
    found = json.loads(ok(run, "cert", "search", "--kind", "root", "--json"))
    assert [c["serial"] for c in found["certificates"]] == [serial] and found["next"] is None
    tail = json.loads(ok(run, "audit", "tail", "-n", "3", "--json"))
    assert len(tail) == 3 and all(len(t["hash"]) == 64 for t in tail) and tail[-1]["prev_hash"] == tail[-2]["hash"]
    both = run("party", "list", "--json", "--csv")
    assert both.code == 2 and "--json" in one_line(both)


def test_tables_never_cut_an_identifier(run: Run) -> None:
    """Piped (not a terminal, COLUMNS unset) a table is as wide as it needs to be."""
    cas = json.loads(ok(run, "ca", "show", "--json"))
    table = ok(run, "ca", "show")
    for ca in cas:
        assert ca["serial"] in table and ca["key_id"] in table
    assert "…" not in table


def test_ca_init_leaves_nothing_behind_when_it_fails(run: Run, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMKI_KEY_PASSPHRASE", "short")
    monkeypatch.delenv("SMKI_DATABASE_URL")
    fresh = tmp_path / "fresh"
    result = run("ca", "init", "--home", str(fresh))
    assert result.code == 1 and one_line(result).startswith("error: key.passphrase-too-short: ")
    assert not fresh.exists()
    assert [p.name for p in tmp_path.iterdir() if "fresh" in p.name] == []  # no staging directory either
    monkeypatch.setenv("SMKI_KEY_PASSPHRASE", "x" * 1024)  # over OpenSSL's limit: was an internal ValueError
    result = run("ca", "init", "--home", str(fresh))
    assert result.code == 1 and one_line(result).startswith("error: key.passphrase-too-long: ")
    assert not fresh.exists()
    # An existing home (an operator's smki.toml) keeps exactly what it had.
    fresh.mkdir()
    (fresh / "smki.toml").write_text("crl-next-update-hours = 12\n")
    assert run("ca", "init", "--home", str(fresh)).code == 1
    assert [p.name for p in fresh.iterdir()] == ["smki.toml"]
    monkeypatch.setenv("SMKI_KEY_PASSPHRASE", "a-long-enough-passphrase")
    made = run("ca", "init", "--home", str(fresh))
    assert made.code == 0 and "CRL 1 (Organisation CA) and ARL 1 (Root) published" in made.out
    assert {"smki.toml", "smki.db", "root.pem", "keys", "crl"} <= {p.name for p in fresh.iterdir()}
    assert "crl-next-update-hours = 12" in (fresh / "smki.toml").read_text()
    assert len(json.loads(ok(run, "ca", "show", "--json", "--home", str(fresh)))) == 3


def test_ca_init_in_the_working_directory(run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--home .`` (and ``""``) is a home like any other: its staging directory goes beside it, not
    inside it, where copying the home into it lost the keys it had just made."""
    monkeypatch.setenv("SMKI_KEY_PASSPHRASE", "a-long-enough-passphrase")
    monkeypatch.delenv("SMKI_DATABASE_URL")
    for name, given in (("dot", "."), ("empty", "")):
        here = tmp_path / name
        here.mkdir()
        (here / "notes.txt").write_text("the operator's own file\n")
        monkeypatch.chdir(here)
        made = run("ca", "init", "--home", given)
        assert made.code == 0, made.err
        assert {"smki.toml", "smki.db", "root.pem", "device-ca.pem", "keys", "crl", "notes.txt"} <= {
            p.name for p in here.iterdir()}
        assert not [p.name for p in tmp_path.iterdir() if ".init-" in p.name]  # no staging directory left
        assert len(json.loads(ok(run, "ca", "show", "--json", "--home", given))) == 3
        assert (here / "notes.txt").read_text() == "the operator's own file\n"
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    refused = run("ca", "init", "--home", str(a_file))
    assert refused.code == 1 and one_line(refused).startswith("error: home.not-a-directory: ")
    assert [p.name for p in tmp_path.iterdir() if "a-file" in p.name] == ["a-file"]


def test_a_home_that_lost_its_database_says_to_restore_it_and_nothing_makes_an_empty_one(
        run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: ``ca show`` said to run ``ca init`` (which refused: the keys exist), ``db status``
    created an empty database file, and ``db upgrade`` built an empty register beside the CA."""
    monkeypatch.setenv("SMKI_KEY_PASSPHRASE", "a-long-enough-passphrase")
    monkeypatch.delenv("SMKI_DATABASE_URL")
    home = tmp_path / "lost"
    assert run("ca", "init", "--home", str(home)).code == 0
    for name in ("smki.db", "smki.db-wal", "smki.db-shm"):
        (home / name).unlink(missing_ok=True)
    for args in (("ca", "show"), ("db", "status"), ("db", "upgrade"), ("audit", "verify")):
        result = run(*args, "--home", str(home))
        assert result.code == 1, (args, result)
        line = one_line(result)
        assert line.startswith("error: home.database-missing: ") and "smki backup restore" in line, line
        assert not (home / "smki.db").exists(), args
    (home / "smki.db").write_bytes(b"")  # an empty database (SQLite's, or a PostgreSQL one made afresh)
    result = run("db", "upgrade", "--home", str(home))
    assert result.code == 1 and one_line(result).startswith("error: store.not-initialised: "), result.err
    import sqlite3

    with sqlite3.connect(home / "smki.db") as db:  # no schema was built: nothing but what opening it wrote
        assert db.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone() == (0,)


def test_a_fresh_home_says_to_run_ca_init_first(run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SMKI_DATABASE_URL")
    nowhere = tmp_path / "nowhere"
    for args in (("party", "list"), ("ca", "show"), ("staff", "add", "op1", "--name", "O", "--role", "ra-operator")):
        result = run(*args, "--home", str(nowhere))
        assert result.code == 1 and one_line(result).startswith("error: home.not-initialised: "), result.err
        assert "smki ca init" in result.err
    assert not nowhere.exists()


def test_every_command_takes_home_and_every_option_says_what_it_is() -> None:
    """Walk the whole command tree: --home everywhere, a help text on every parameter."""
    from typer.main import get_command

    root = get_command(main.app)
    missing_home: list[str] = []
    undocumented: list[str] = []
    literal: list[str] = []

    def walk(command: object, path: str) -> None:
        from typer import _click
        from typer.core import TyperGroup, TyperOption

        assert isinstance(command, _click.Command)
        if isinstance(command, TyperGroup):
            ctx = _click.Context(command)
            for name in command.list_commands(ctx):
                walk(command.get_command(ctx, name), f"{path} {name}")
            return
        options = {o for p in command.params for o in getattr(p, "opts", [])}
        # Benchmarks make their own homes; 'backup verify' checks an archive, not a home.
        if "--home" not in options and not path.startswith(("smki bench", "smki backup verify")):
            missing_home.append(path)
        for param in command.params:
            if isinstance(param, TyperOption) and not param.help:
                undocumented.append(f"{path} {param.opts[0]}")
        for text in [command.help or "", *(getattr(p, "help", "") or "" for p in command.params)]:
            if "``" in text or ":mod:" in text:  # reST markup shows literally in --help
                literal.append(f"{path}: {text[:60]}")

    walk(root, "smki")
    assert missing_home == []
    assert undocumented == []
    assert literal == []


def test_constants_repeated_for_fast_help_match_their_source() -> None:
    from smki.services.populate import DEFAULT_CHUNK
    from smki.services.revocation import REASON_CODES
    from smki.store import MAX_PAGE

    assert cert_cmd.MAX_PAGE == MAX_PAGE
    assert populate_cmd.DEFAULT_CHUNK == DEFAULT_CHUNK
    assert tuple(REASON_CODES) == revoke_cmd.REASON_NAMES
    assert get_args(revoke_cmd.ReasonChoice) == (*REASON_CODES, *(str(code) for code in REASON_CODES.values()))
    from smki.interfaces.cli import serve_cmd
    from smki.settings_model import SETTINGS

    choices = {setting.key: setting.choices for setting in SETTINGS}
    assert get_args(serve_cmd.LogLevel) == choices["log-level"]
    assert get_args(serve_cmd.LogFormat) == choices["log-format"]
    from smki.services import batch_lifecycle

    assert {s.value for s in ra_batches_cmd.BatchStatus} == {
        batch_lifecycle.PENDING, batch_lifecycle.QUEUED, batch_lifecycle.PROCESSING, batch_lifecycle.PAUSED,
        batch_lifecycle.REJECTED, batch_lifecycle.COMPLETED}


#: What help must never import: the database, crypto, web stacks, Pydantic, Rich's Markdown.
HEAVY = ("cryptography", "sqlalchemy", "fastapi", "pkilint", "alembic", "uvicorn", "jinja2", "pydantic",
         "markdown_it")


def test_the_command_list_imports_no_command_module() -> None:
    """``smki --help`` lists every group from main.py's declarations, importing none of them."""
    import subprocess

    code = ("import sys, runpy; sys.argv = ['smki', '--help']\n"
            "from smki.interfaces.cli import main\n"
            "try:\n    main.run()\nexcept SystemExit:\n    pass\n"
            f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}"
            " or m.startswith(('smki.services', 'smki.store')) or m.endswith('_cmd'))\n"
            "print('HEAVY', heavy)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"}).stdout
    assert "HEAVY []" in out
    for name in main.COMMANDS.entries:
        assert f" {name} " in out


@pytest.mark.parametrize("argv", [(group,) for group in sorted(main.COMMANDS.entries)]
                         + [("party", "show"), ("cert", "search"), ("ra", "propose"), ("issue", "batch")])
def test_a_group_help_imports_neither_database_nor_crypto(argv: tuple[str, ...]) -> None:
    import subprocess

    code = (f"import sys; sys.argv = ['smki', *{argv!r}, '--help']\n"
            "from smki.interfaces.cli import main\n"
            "try:\n    main.run()\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
            f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
            "print('HEAVY', heavy)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stdout


#: What a simple command on a SQLite home must not import: the ORM, the PostgreSQL dialect (its
#: async drivers), Pydantic (Typer's coercion), Alembic (the schema check reads alembic_version).
NOT_FOR_SIMPLE = ("sqlalchemy.orm", "sqlalchemy.dialects.postgresql", "pydantic", "alembic", "fastapi", "jinja2")


def test_simple_commands_import_only_what_they_use(tmp_path: Path) -> None:
    """``party show``, ``party list --json`` and ``ra queue`` answer without the ORM, the PostgreSQL
    dialect, Pydantic or cryptography (issue 14: under 0.5 s); ``ca show`` needs cryptography only.
    Plain lines and JSON are printed without importing Rich (tables need it)."""
    import subprocess

    from tests.cli.helpers import smki, smki_env

    env = smki_env("", SMKI_DATABASE_URL="")
    env.pop("SMKI_DATABASE_URL")
    home = str(tmp_path / "home")
    for args in (("ca", "init"), ("staff", "add", "op1", "--name", "Olive", "--role", "ra-operator"),
                 ("party", "add", "P1", "--name", "Acme", "--category", "large-supplier", "--as", "op1")):
        assert smki([*args, "--home", home], env).code == 0
    for argv, also in ((("party", "show", "P1"), ("cryptography", "rich")),  # plain lines: no Rich either
                       (("party", "list", "--json"), ("cryptography", "rich")),
                       (("ra", "queue"), ("cryptography",)), (("ca", "show"), ())):
        code = (f"import sys; sys.argv = ['smki', *{argv!r}, '--home', {home!r}]\n"
                "from smki.interfaces.cli import main\n"
                "try:\n    main.run()\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
                f"print('LOADED', sorted(m for m in sys.modules if m.startswith({NOT_FOR_SIMPLE + also!r})))\n")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert "LOADED []" in done.stdout, (argv, done.stdout[-400:])


def test_a_bad_number_or_choice_is_one_usage_line_saying_what_is_wrong(run: Run) -> None:
    """Numbers, ranges and choices are checked without Pydantic (``cli.lazy``), in Typer's words."""
    for args, says in ((("cert", "search", "--limit", "abc"), "'abc' is not a valid integer."),
                       (("cert", "search", "--limit", "0"), "0 is not in the range 1<=x<="),
                       (("audit", "tail", "-n", "10001"), "10001 is not in the range 1<=x<=10000."),
                       (("cert", "search", "--kind", "robot"), "'robot' is not one of 'root', 'org-ca'")):
        result = run(*args)
        assert result.code == main.EXIT_USAGE, (args, result)
        assert says in one_line(result), (args, result.err)


def test_the_batch_queue_is_scriptable_and_its_status_a_checked_choice(run: Run) -> None:
    _setup(run)
    assert json.loads(ok(run, "ra", "batches", "list", "--json")) == []
    assert json.loads(ok(run, "ra", "batches", "list", "--status", "completed", "--json")) == []
    assert ok(run, "ra", "batches", "list", "--csv").strip() == "batch,party,aro,interface,csrs,status,submitted,reason"
    wrong = run("ra", "batches", "list", "--status", "done")
    assert wrong.code == main.EXIT_USAGE and "'done' is not one of 'pending', 'queued'" in one_line(wrong)
