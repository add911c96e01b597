"""Backups against a PostgreSQL server that checks the password (``scram-sha-256``).

The suite's PostgreSQL server trusts 127.0.0.1, so ``tests/ops/test_backup.py`` shows that
``pg_dump``/``pg_restore`` get no ``PGPASSWORD``, not that libpq read the password from smki's
``PGPASSFILE``. Here a private cluster (``tests/ops/private_postgres.py``) refuses a wrong or
missing password: a backup and a restore that succeed there prove the password went through the
file, escaped as libpq's password-file format needs (``:`` and ``\\`` in the password). These tests
start their own server, so they run on both lanes; they skip where PostgreSQL is not installed.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import make_url

from tests.cli.helpers import smki, smki_env
from tests.ops.private_postgres import PrivateCluster, Unavailable, new_cluster
from tests.ops.test_backup import _serials

ADMIN_PASSWORD = "admin-Pw-19"
#: ':' and '\' must be escaped in a password file; '@', '/', '%' and ' ' are percent-encoded in the URL.
PASSWORD = "s:cr\\et@pg/77% x\\:"
WRONG = "s:cr\\et@pg/77% y"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateCluster]:
    """One private scram-sha-256 cluster for this module, stopped (``-m immediate``) whatever happens."""
    try:
        made = new_cluster(tmp_path_factory.mktemp("pg"), superuser="smki_admin", password=ADMIN_PASSWORD)
    except Unavailable as exc:
        pytest.skip(str(exc))
    try:
        made.init()
        made.start()
        yield made
    finally:
        made.stop()


def _admin(cluster: PrivateCluster, *statements: str) -> None:
    with psycopg.connect(host="127.0.0.1", port=cluster.port, dbname="postgres", user=cluster.superuser,
                         password=cluster.password, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def _owned_database(cluster: PrivateCluster, role: str) -> str:
    """A new, empty database owned by ``role`` (which smki connects as)."""
    name = f"smki_{uuid.uuid4().hex[:10]}"
    _admin(cluster, f'CREATE DATABASE "{name}" OWNER "{role}"')
    return name


def _new_role(cluster: PrivateCluster, password: str) -> str:
    role = f"smki_{uuid.uuid4().hex[:10]}"
    quoted = password.replace("'", "''")
    _admin(cluster, f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{quoted}'")
    return role


URL_PROBE = "postgresql+psycopg://u@127.0.0.1:1/d"


def _in_url(password: str) -> str:
    """``password`` as it stands in a URL (percent-encoded)."""
    rendered = make_url(URL_PROBE).set(password=password).render_as_string(hide_password=False)
    return rendered.split("//u:", 1)[1].rsplit("@127.0.0.1", 1)[0]


def _one_line_error(result: Any, code: str) -> None:
    """smki's own error (``error: <code>: ...``) on one line, no traceback, no password in any form."""
    assert result.code == 1, (result.out, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {code}: "), result.err
    assert "Traceback" not in result.err
    for secret in (PASSWORD, WRONG, _in_url(PASSWORD), _in_url(WRONG)):
        assert secret not in result.err


def test_the_private_cluster_refuses_a_wrong_password(cluster: PrivateCluster) -> None:
    """What makes the other tests prove anything: this server checks passwords, unlike the suite's."""
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(host="127.0.0.1", port=cluster.port, dbname="postgres", user=cluster.superuser,
                        password="not-" + cluster.password).close()


def test_backup_and_restore_authenticate_through_the_password_file(tmp_path: Path, cluster: PrivateCluster) -> None:
    role = _new_role(cluster, PASSWORD)
    url = cluster.url(_owned_database(cluster, role), user=role, password=PASSWORD)
    restored_url = cluster.url(_owned_database(cluster, role), user=role, password=PASSWORD)
    # libpq prefers PGPASSWORD to any file: an inherited wrong one must not reach pg_dump/pg_restore.
    env = smki_env(url, PGPASSWORD=WRONG)
    home = tmp_path / "home"
    initialised = smki(["ca", "init", "--home", str(home)], env)
    assert initialised.code == 0, initialised.err
    before = _serials(url)
    assert len(before) == 3

    archive = tmp_path / "smki.tar.gz"
    created = smki(["backup", "create", "--out", str(archive), "--home", str(home)], env)
    assert created.code == 0, created.err
    assert "database postgresql" in created.out

    # The URL with its password from the environment (the command line refuses it): the restored
    # smki.toml names the database without the password.
    restore_env = {k: v for k, v in env.items() if k != "SMKI_DATABASE_URL"}
    restored = smki(["backup", "restore", str(archive), "--home", str(tmp_path / "restored")],
                    {**restore_env, "SMKI_DATABASE_URL": restored_url})
    assert restored.code == 0, restored.err
    assert _serials(restored_url) == before
    config = (tmp_path / "restored" / "smki.toml").read_text(encoding="utf-8")
    assert _in_url(PASSWORD) not in config and PASSWORD not in config
    assert f"{role}@127.0.0.1:{cluster.port}/{make_url(restored_url).database}" in config

    # The same home and an empty database, with a wrong password: smki's one-line error, no archive.
    wrong = smki(["backup", "create", "--out", str(tmp_path / "wrong.tar.gz"), "--home", str(home)],
                 smki_env(cluster.url(make_url(url).database or "", user=role, password=WRONG)))
    _one_line_error(wrong, "store.unavailable")
    assert "password authentication failed" in wrong.err and not (tmp_path / "wrong.tar.gz").exists()
    empty_url = cluster.url(_owned_database(cluster, role), user=role, password=WRONG)
    refused = smki(["backup", "restore", str(archive), "--home", str(tmp_path / "again")],
                   {**restore_env, "SMKI_DATABASE_URL": empty_url})
    _one_line_error(refused, "store.unavailable")
    assert not (tmp_path / "again").exists()


def test_pg_dump_refused_by_the_server_is_smkis_error_without_the_password(
        tmp_path: Path, cluster: PrivateCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """The role's password changes after smki connected but before ``pg_dump`` does (a rotation
    mid-backup): pg_dump's own refusal becomes ``backup.pg-dump-failed``, one line, no password."""
    from smki.config import Settings
    from smki.errors import SmkiError
    from smki.services import backup
    from smki.services.ca_admin import initialise_ca

    role = _new_role(cluster, PASSWORD)
    url = cluster.url(_owned_database(cluster, role), user=role, password=PASSWORD)
    home = tmp_path / "home"
    initialise_ca(Settings(home=home, database_url=url), b"backup-passphrase", actor="admin")
    real_run = subprocess.run
    argvs: list[str] = []

    def rotated_first(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        argvs.append(" ".join(argv))
        _admin(cluster, f"ALTER ROLE \"{role}\" PASSWORD 'rotated-{uuid.uuid4().hex}'")
        return real_run(argv, **kwargs)

    monkeypatch.setenv("SMKI_DATABASE_URL", url)
    monkeypatch.setattr("smki.services.backup.subprocess.run", rotated_first)
    with pytest.raises(SmkiError) as failed:
        backup.create_backup(home, tmp_path / "smki.tar.gz")
    assert failed.value.code == "backup.pg-dump-failed"
    assert "password authentication failed" in failed.value.message
    assert "\n" not in failed.value.message and PASSWORD not in failed.value.message
    assert len(argvs) == 1 and argvs[0].startswith("pg_dump ")  # ps shows no password, in no form:
    assert PASSWORD not in argvs[0] and _in_url(PASSWORD) not in argvs[0] and f"{role}@127.0.0.1" in argvs[0]
