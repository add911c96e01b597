"""Backup and restore of a home: a consistent snapshot of the database plus the files around it.

``create_backup`` may run while ``smki serve`` does: SQLite is copied with its online backup API
(a consistent snapshot even mid-batch, WAL included), PostgreSQL with ``pg_dump`` (one
transaction). The archive (tar.gz) holds:

* ``manifest.json``: smki version, schema revision, database kind, creation time, key backend,
  and the sha256 and size of every other member;
* ``database/smki.db`` or ``database/smki.pgdump``;
* every file of the home as it lies (``smki.toml``, the CA and credential certificates, the
  published CRLs and ARLs under ``crl/``, the encrypted CA key files under ``keys/``) except the
  database files and any **plaintext** private key (the listeners' TLS key, re-issued on the next
  start), which are listed in the manifest as excluded and why; a database password that an
  older ``smki.toml`` holds is taken out of the archived copy (and listed so);
* with a PKCS#11 key backend, ``HSM-KEYS.txt``: the CA keys stay in the HSM and are not in the
  archive; restoring needs the same token (or its own backup, made with the HSM's tools).

``verify_backup`` recomputes every sha256 and refuses an archive with a member that is missing,
extra, altered, or a plaintext key. ``restore_backup`` verifies first, then restores into an
empty home (and an empty PostgreSQL database when the backup came from one), and records
``backup.restored`` in the restored audit log.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import re
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from smki import __version__
from smki.config import (
    CONFIG_FILE,
    Settings,
    database_url_password,
    database_url_without_password,
    load_settings,
    password_bearing_url_in,
)
from smki.errors import NotFound, SmkiError
from smki.services.files import replaced_on_success
from smki.settings_model import environment

MANIFEST = "manifest.json"
SQLITE_MEMBER = "database/smki.db"
PGDUMP_MEMBER = "database/smki.pgdump"
HSM_NOTE = "HSM-KEYS.txt"
_PLAINTEXT_KEY = re.compile(rb"-----BEGIN (EC |RSA |DSA |)PRIVATE KEY-----")
_SKIP_DIRS = {"run"}


@dataclass(frozen=True)
class BackupReport:
    path: Path
    manifest: dict[str, Any]

    @property
    def files(self) -> int:
        return len(self.manifest["files"])


#: Members are hashed and searched a block at a time: a database of millions of certificates is
#: gigabytes, and ``create``, ``verify`` and ``restore`` held each member whole (337 MB of memory
#: for a 287 MB database; found by an exploratory run).
_BLOCK = 1 << 20
#: What a block is searched with besides itself: the end of the block before, so a key's PEM header
#: split between two blocks is still found.
_OVERLAP = 64


def _scan(blocks: Iterator[bytes], sink: Callable[[bytes], object] | None = None) -> tuple[str, int, bool]:
    """(sha256, size, whether a plaintext private key is in it) of a stream of blocks, each also
    handed to ``sink`` (a file being written) as it passes."""
    digest = hashlib.sha256()
    size = 0
    found = False
    tail = b""
    for block in blocks:
        digest.update(block)
        size += len(block)
        found = found or _PLAINTEXT_KEY.search(tail + block) is not None
        tail = block[-_OVERLAP:]
        if sink is not None:
            sink(block)
    return digest.hexdigest(), size, found


def _file_blocks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while block := handle.read(_BLOCK):
            yield block


def _member_blocks(archive: tarfile.TarFile, member: tarfile.TarInfo) -> Iterator[bytes]:
    handle = archive.extractfile(member)
    if handle is None:
        raise SmkiError("backup.corrupt", f"{member.name} is not a file")
    while block := handle.read(_BLOCK):
        yield block


def _home_files(home: Path) -> list[Path]:
    """Every file under ``home``, through symbolic links to directories too (a ``keys/`` kept
    elsewhere and linked in was left out of the backup without a word: ``Path.rglob`` does not
    follow them), each real directory once."""
    found: list[Path] = []
    seen: set[Path] = set()
    for directory, subdirectories, names in os.walk(home, followlinks=True):
        real = Path(directory).resolve()
        if real in seen:  # a link back to a directory already walked
            subdirectories.clear()
            continue
        seen.add(real)
        found.extend(Path(directory) / name for name in names)
    return sorted(found)


def _database_files(settings: Settings) -> set[Path]:
    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() != "sqlite" or not url.database:
        return set()
    db = Path(url.database).resolve()
    return {db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm"), db.with_name(db.name + "-journal")}


@contextmanager
def _pg_client(url: str) -> Iterator[tuple[dict[str, str], str]]:
    """The environment and libpq URL (no SQLAlchemy driver suffix, no password) for ``pg_dump`` /
    ``pg_restore``. The password goes in a temporary password file (``PGPASSFILE``, mode 0600 from
    its creation, removed on leaving, failure or not), never in their argv or their environment:
    ``PGPASSWORD`` would stay readable in ``/proc/PID/environ`` for as long as they run, and the
    command line in ``ps`` for anyone on the machine.

    In the file, ``:`` and ``\\`` are escaped with ``\\`` (libpq's password-file format); a line
    break cannot be written there at all, so it is refused."""
    password = database_url_password(url)
    env = dict(os.environ)
    stripped = make_url(database_url_without_password(url))._replace(drivername="postgresql")
    plain = stripped.render_as_string(hide_password=False)
    if not password:
        yield env, plain
        return
    if "\n" in password or "\r" in password:
        raise SmkiError("backup.password-unsupported", "the database password holds a line break, which a "
                        "libpq password file cannot hold: change the password to back up with pg_dump")
    env.pop("PGPASSWORD", None)  # libpq prefers it to the file
    fd, name = tempfile.mkstemp(prefix="smki-pgpass-")  # O_EXCL, mode 0600
    try:
        escaped = password.replace("\\", "\\\\").replace(":", "\\:")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(f"*:*:*:*:{escaped}\n")  # this file serves this one command: any host, database, user
        env["PGPASSFILE"] = name
        yield env, plain
    finally:
        Path(name).unlink(missing_ok=True)


def _tool_error(tool: str, stderr: str) -> str:
    """The line of ``tool``'s stderr that says what failed: its last ``<tool>: error:`` line. The
    last line may only follow it: libpq's ``password retrieved from file ...`` after a refused
    password, pg_restore's ``Command was: <SQL>`` after a failed statement."""
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(f"{tool}: error:")]
    return " ".join((errors or lines or [f"{tool} failed"])[-1].split())


def _snapshot_database(settings: Settings, workdir: Path) -> tuple[str, Path]:
    url = settings.resolved_database_url
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        source_path = make_url(url).database
        if not source_path or not Path(source_path).exists():
            raise SmkiError("backup.no-database", f"no SQLite database at {source_path}")
        target = workdir / "smki.db"
        source = sqlite3.connect(source_path, timeout=60)
        dest = sqlite3.connect(target)
        try:
            source.backup(dest)  # online backup API: a consistent copy while others write
        finally:
            dest.close()
            source.close()
        return SQLITE_MEMBER, target
    if backend == "postgresql":
        if shutil.which("pg_dump") is None:
            raise SmkiError("backup.no-pg-dump", "pg_dump is not installed (apt-get install postgresql-client)")
        target = workdir / "smki.pgdump"
        with _pg_client(url) as (env, plain):
            done = subprocess.run(["pg_dump", "--format=custom", "--no-owner", "--no-privileges",
                                   f"--file={target}", f"--dbname={plain}"], env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SmkiError("backup.pg-dump-failed", _tool_error("pg_dump", done.stderr))
        return PGDUMP_MEMBER, target
    raise SmkiError("backup.unsupported-database", f"cannot back up a {backend} database")


def create_backup(home: Path | str, out: Path) -> BackupReport:
    """Write a backup of ``home`` to ``out`` (refusing to overwrite), and return its manifest."""
    from smki.services.context import open_home

    if out.exists():
        raise SmkiError("backup.exists", f"{out} exists; not overwriting a backup")
    opened = open_home(home)  # refuses an out-of-date schema: back up what this smki understands
    settings = opened.settings
    schema = opened.store.schema_status().current
    opened.close()
    home_path = settings.home.resolve()
    skip = _database_files(settings)
    files: dict[str, dict[str, Any]] = {}
    excluded: list[dict[str, str]] = []
    payload: dict[str, bytes | Path] = {}
    for path in _home_files(home_path):
        relative = path.relative_to(home_path)
        if not path.is_file() or relative.parts[0] in _SKIP_DIRS or path.resolve() in skip:
            continue
        if out.resolve() == path.resolve():
            continue
        data = path.read_bytes()
        if _PLAINTEXT_KEY.search(data):
            excluded.append({"path": relative.as_posix(), "why": "plaintext private key (never backed up)"})
            continue
        if relative.as_posix() == CONFIG_FILE and (redacted := _archived_config(path, data)) is not None:
            data = redacted
            excluded.append({"path": f"{CONFIG_FILE}: the password in database-url",
                             "why": "a database password (never backed up)"})
        payload[relative.as_posix()] = data
    if settings.key_backend == "pkcs11":
        payload[HSM_NOTE] = (
            f"The CA keys of this home live in the PKCS#11 token {settings.pkcs11_token!r} "
            f"(module {settings.pkcs11_module}). They are not in this backup: restoring needs the same\n"
            "token, or a copy made with the HSM's own backup tools, and its PIN (SMKI_PKCS11_PIN).\n").encode()
    out.parent.mkdir(parents=True, exist_ok=True)
    # The database's snapshot is as large as the database: beside the archive, on the disk meant for
    # backups, not in /tmp (often memory, and where a killed run's copy was never seen again).
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.snapshot-", dir=out.parent) as tmp:
        member, snapshot = _snapshot_database(settings, Path(tmp))
        payload[member] = snapshot
        for name, item in payload.items():
            digest, size, _found = _scan(_file_blocks(item) if isinstance(item, Path) else iter((item,)))
            files[name] = {"sha256": digest, "size": size}
        manifest = {
            "format": 1,
            "smki_version": __version__,
            "schema": schema,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "database": "postgresql" if member == PGDUMP_MEMBER else "sqlite",
            "key_backend": settings.key_backend,
            "files": files,
            "excluded": excluded,
        }
        # Owner-only from its first byte (it holds the database and the key files); interrupted, no
        # half archive is left, named or .partial; and never over a backup that took the name meanwhile.
        try:
            _write_archive(out, manifest, payload)
        except FileExistsError as exc:  # another backup took the name while this one was written
            raise SmkiError("backup.exists", f"{out} exists; not overwriting a backup") from exc
    return BackupReport(out, manifest)


def _write_archive(out: Path, manifest: dict[str, Any], payload: dict[str, bytes | Path]) -> None:
    """The archive at ``out``, which it never replaces (``FileExistsError`` if a file took the name)."""
    with replaced_on_success(out, private=True, exclusive=True) as partial, tarfile.open(partial, "w:gz") as archive:
        _add(archive, MANIFEST, json.dumps(manifest, indent=2, sort_keys=True).encode())
        for name, item in payload.items():
            if isinstance(item, Path):
                archive.add(item, arcname=name)
            else:
                _add(archive, name, item)


def _add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o600
    info.mtime = int(datetime.now(UTC).timestamp())
    archive.addfile(info, io.BytesIO(data))


def _safe_name(name: str) -> bool:
    path = Path(name)
    return not path.is_absolute() and ".." not in path.parts and name == path.as_posix()


def verify_backup(path: Path) -> BackupReport:
    """Every member present, unaltered (sha256), nothing extra, no plaintext key; else ``backup.corrupt``
    (``backup.not-found`` when there is no such file: a mistyped name is not a damaged backup)."""
    if not path.is_file():
        raise NotFound("backup.not-found", f"{path}: no such file" if not path.exists() else f"{path} is not a file")
    try:
        with tarfile.open(path, "r:gz") as archive:
            members = {m.name: m for m in archive.getmembers()}
            if MANIFEST not in members:
                raise SmkiError("backup.corrupt", f"{path}: no {MANIFEST}")
            manifest = json.loads(_read(archive, members[MANIFEST]))
            _check_manifest_shape(manifest, path)
            listed = manifest["files"]
            extra = sorted(set(members) - set(listed) - {MANIFEST})
            if extra:
                raise SmkiError("backup.corrupt", f"{path}: {extra[0]} is not in the manifest")
            for name, entry in listed.items():
                if not _safe_name(name):
                    raise SmkiError("backup.corrupt", f"{path}: unsafe member name {name!r}")
                member = members.get(name)
                if member is None or not member.isfile():
                    raise SmkiError("backup.corrupt", f"{path}: {name} is missing")
                digest, _size, plaintext_key = _scan(_member_blocks(archive, member))
                if digest != entry["sha256"]:
                    raise SmkiError("backup.corrupt", f"{path}: {name} does not match its sha256")
                if plaintext_key:
                    raise SmkiError("backup.corrupt", f"{path}: {name} holds a plaintext private key")
    except (tarfile.TarError, OSError, EOFError, json.JSONDecodeError, KeyError) as exc:
        raise SmkiError("backup.corrupt", f"{path}: not a readable smki backup ({exc})") from exc
    return BackupReport(path, manifest)


def _read(archive: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    handle = archive.extractfile(member)
    if handle is None:
        raise SmkiError("backup.corrupt", f"{member.name} is not a file")
    return handle.read()


def _check_manifest_shape(manifest: Any, path: Path) -> None:
    """What ``verify`` and ``restore`` read of a manifest is there, of its type, else ``backup.corrupt``
    (a manifest of another shape was an internal AttributeError, TypeError or KeyError, and one
    without its database kind passed ``verify`` to fail ``restore``)."""
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if (not isinstance(files, dict)
            or not all(isinstance(e, dict) and isinstance(e.get("sha256"), str) for e in files.values())
            or manifest.get("database") not in ("sqlite", "postgresql")):
        raise SmkiError("backup.corrupt", f"{path}: its {MANIFEST} is not an smki backup's manifest")


def restore_backup(path: Path, home: Path, *, database_url: str = "", actor: str) -> BackupReport:
    """Restore into a new, empty ``home`` (and an empty database when the backup is PostgreSQL's)."""
    report = verify_backup(path)
    if home.exists() and any(home.iterdir()):
        raise SmkiError("backup.home-not-empty", f"{home} is not empty: restore into a new home")
    manifest = report.manifest
    is_pg = manifest["database"] == "postgresql"
    target_url = database_url or str(environment("database-url"))
    if is_pg and not target_url.startswith("postgresql"):
        raise SmkiError("backup.needs-database", "this backup is of a PostgreSQL database: give the empty "
                                                 "database to restore into (--database-url or SMKI_DATABASE_URL)")
    if not is_pg and target_url:
        raise SmkiError("backup.needs-database", "this backup is of a SQLite database; it is restored into "
                                                 "the new home (unset SMKI_DATABASE_URL / --database-url)")
    # Built beside the home and renamed into place whole, as ``ca init`` builds one: a restore that
    # fails, is killed (kill -9 left a truncated smki.db that no rerun would overwrite) or loses a
    # race with another restore into the same home (whose clean-up deleted the winner's files) never
    # leaves a half home, and a rerun starts clean (found by an exploratory run).
    final = Path(os.path.abspath(home))
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.restore-", dir=final.parent))
    try:
        _restore_into(path, staging, manifest, is_pg=is_pg, target_url=target_url, actor=actor)
        load_settings(staging)
        try:
            os.rename(staging, final)  # the home absent, or an empty directory: either is replaced whole
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
                raise SmkiError("backup.home-not-empty", f"{home} is not empty (a home, or another restore, got "
                                                         "there meanwhile): restore into a new home") from exc
            raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return report


def _restore_into(path: Path, home: Path, manifest: dict[str, Any], *, is_pg: bool, target_url: str,
                  actor: str) -> None:
    from smki.audit import AuditEvent
    from smki.store import Store

    with tarfile.open(path, "r:gz") as archive, tempfile.TemporaryDirectory(prefix=".pgdump-", dir=home) as tmp:
        for name in manifest["files"]:
            blocks = _member_blocks(archive, archive.getmember(name))
            if name == PGDUMP_MEMBER:
                dump = Path(tmp) / "smki.pgdump"
                with dump.open("wb") as handle:
                    _scan(blocks, handle.write)
                _pg_restore(dump, target_url)
                continue
            target = home / (CONFIG_FILE if name == CONFIG_FILE else "smki.db" if name == SQLITE_MEMBER else name)
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # owner-only, as ca init makes keys/
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                _scan(blocks, handle.write)
    _point_config_at(home, target_url if is_pg else "")
    # The database restored into, by the URL given (its password too): the restored smki.toml names
    # it without one, for the password to come from the environment or ~/.pgpass from now on.
    store = Store.open(target_url or load_settings(home).resolved_database_url)
    try:
        store.require_current_schema()
        with store.transaction() as tx:
            tx.append_audit([AuditEvent(actor, "backup.restored", path.name, {
                "created": manifest["created"], "smki_version": manifest["smki_version"],
                "schema": manifest["schema"]})])
    finally:
        store.close()


def _pg_restore(dump: Path, url: str) -> None:
    from smki.store import Store

    store = Store.open(url)
    try:
        if store.schema_status().current is not None:
            raise SmkiError("backup.database-not-empty", "the target database already holds an smki schema")
        tables = store.some_tables()  # anyone's: smki's would be restored in among them
        if tables:
            raise SmkiError("backup.database-not-empty", f"the target database is not empty (it holds "
                                                         f"{', '.join(tables)}): restore into an empty database")
    finally:
        store.close()
    if shutil.which("pg_restore") is None:
        raise SmkiError("backup.no-pg-restore", "pg_restore is not installed (apt-get install postgresql-client)")
    with _pg_client(url) as (env, plain):
        done = subprocess.run(["pg_restore", "--no-owner", "--no-privileges", "--exit-on-error",
                               f"--dbname={plain}", str(dump)], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SmkiError("backup.pg-restore-failed", _tool_error("pg_restore", done.stderr))


def _point_config_at(home: Path, database_url: str) -> None:
    """The restored smki.toml names the restored database: the new home's SQLite file, or
    ``database_url`` without its password (:func:`smki.config.database_url_without_password`)."""
    config = home / CONFIG_FILE
    if not config.exists():
        return
    config.write_text(_naming_database(config.read_text(encoding="utf-8"), database_url), encoding="utf-8")


def _naming_database(text: str, database_url: str) -> str:
    """``smki.toml``'s text with its ``database-url`` line (added if missing) naming ``database_url``
    without its password."""
    # A TOML basic string (JSON's escapes are TOML's), put in by a function: a URL's ``\`` or
    # ``"`` would otherwise break the file, and ``re`` would read ``\1`` or ``\n`` as a template.
    line = f"database-url = {json.dumps(database_url_without_password(database_url))}"
    new, count = re.subn(r"(?m)^database-url\s*=.*$", lambda _match: line, text)
    return new if count else line + "\n" + text


def _archived_config(path: Path, data: bytes) -> bytes | None:
    """``smki.toml`` (``path``, read as ``data``) as the archive holds it when it names the database
    with a password (written before smki kept passwords out of it): the same file without the
    password. None when there is none to take out."""
    written = password_bearing_url_in(path)
    return _naming_database(data.decode("utf-8"), written).encode("utf-8") if written else None
