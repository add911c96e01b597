"""Every setting of smki in one typed model: its ``smki.toml`` key, environment variable, CLI flag.

This table is the configuration reference and the only parser of the configuration. From it come
``docs/configuration.md`` (:func:`render_markdown`, checked by a test), the commented ``smki.toml``
that ``smki ca init`` writes (:func:`render_toml`), and :func:`resolve`: the file, the environment
and the command-line flags, checked against the table (an unknown key or a value of the wrong type
is refused naming the key, the variable or the flag) and turned into typed values with their
source. :func:`smki.config.load_settings` runs it on every start; the components read their values
from the result (``Settings`` fields for the top level, ``Settings.sections`` for ``[api]``,
``[capacity]``, ``[batches]`` and the tables) and parse nothing themselves. ``smki config show``
prints :func:`effective` of it, ``smki config check`` runs it.

Keys are dotted paths: ``database-url`` (top level), ``api.gateway``, ``capacity.batch-csrs.capacity``
(``capacity.<limit>.*`` for any limit name; the four named below are the SEC's).
"""

from __future__ import annotations

import math
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from smki.errors import ConfigError

STRING, INTEGER, NUMBER, BOOLEAN, STRINGS, LISTEN = "string", "integer", "number", "boolean", "list of strings", \
    "host:port"
WINDOW = "HH:MM-HH:MM"
DAY = 86_400
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Listen:
    """A listener's address: the typed value of a ``host:port`` setting (``[::1]:80`` for IPv6)."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str, what: str) -> Listen:
        host, sep, port = text.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ConfigError("config.invalid", f"{what}: must be host:port, not {text!r}")
        return cls(host.strip("[]"), int(port))

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Setting:
    key: str
    type: str
    default: Any
    doc: str
    env: str = ""
    flag: str = ""
    secret: bool = False
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    oid: bool = False  # dotted-decimal object identifiers (each of a list)
    ca_name: bool = False  # a CA's common name: PrintableString text, as the key ceremony writes it
    host_names: bool = False  # DNS names or IP addresses (each of a list), as a certificate's SANs
    toml: bool = True  # False: environment only (secrets never live in a file)
    empty_ok: bool = True
    deprecated: bool = False  # accepted, not written to a new smki.toml
    from_file: bool = False  # also <env>_FILE / a systemd credential (every secret with a variable is)

    @property
    def file_capable(self) -> bool:
        """Whether the value may come from a file named by ``<env>_FILE`` or from a systemd
        credential named ``<env>`` (:func:`_environment_text`)."""
        return bool(self.env) and (self.secret or self.from_file)

    @property
    def section(self) -> str:
        return self.key.rpartition(".")[0]

    @property
    def name(self) -> str:
        return self.key.rpartition(".")[2]


_LIMITS = {  # name: (capacity, period s, off-peak period s or None, what, reference quoted on refusal)
    "portal-adhoc": (150, DAY, None, "ad hoc Portal Device CSRs per Party (SEC Appendix N §3.1)",
                     "SEC Appendix N §3.1: 150 ad hoc Portal Device CSRs per Party per 24 h"),
    "adhoc-service": (1, 0.8, 4.0, "Ad Hoc Device CSR web service: 1 CSR per 0.8 s in core hours, per 4 s otherwise",
                      "SEC Appendix N §3.1: Ad Hoc Device CSR web service, 1 CSR per 0.8 s in core hours "
                      "(07:00-20:00), 1 per 4 s otherwise"),
    "batch-csrs": (50000, DAY, None, "batched Device CSRs per Party per 24 h without 7 days' notice",
                   "SEC Appendix N §3.1: more than 50,000 Device CSRs in 24 h needs 7 days' notice"),
    "organisation-csrs": (150, DAY, None, "Organisation CSRs per Party per 24 h (smki default)",
                          "smki default, following the Portal's ad hoc limit"),
}


def _limit_settings() -> list[Setting]:
    out = []
    for name, (capacity, period, off_peak, what, reference) in _LIMITS.items():
        out += [
            Setting(f"capacity.{name}.capacity", NUMBER, capacity, f"{what}: units per period (0 switches it off)",
                    minimum=0),
            Setting(f"capacity.{name}.period", NUMBER, period, "the period in seconds", minimum=0),
            Setting(f"capacity.{name}.off-peak-period", NUMBER, off_peak,
                    "the period outside core hours (07:00-20:00 UK time); unset: the same", minimum=0),
            Setting(f"capacity.{name}.enabled", BOOLEAN, True, "false switches this limit off"),
            Setting(f"capacity.{name}.reference", STRING, reference, "the reference quoted when the limit refuses"),
        ]
    return out


MAX_VALIDITY_YEARS = 100
"""Validity periods stop here: a notAfter must stay within X.509's four-digit years (a typo of
100000 years failed only at issuance, as an internal error)."""

SETTINGS: tuple[Setting, ...] = (
    # -- the home and the database -------------------------------------------------------------------
    Setting("home", STRING, "./smki-data", "the home directory: smki.toml, the SQLite database, key files, "
            "certificates, CRLs", env="SMKI_HOME", flag="--home (every command)", toml=False),
    Setting("database-url", STRING, "", "SQLAlchemy URL; empty: SQLite at <home>/smki.db. PostgreSQL: "
            "postgresql+psycopg://user@host/db. smki writes it into smki.toml without a password and refuses "
            "one in --database-url: give the password in ~/.pgpass, or the whole URL as "
            "SMKI_DATABASE_URL_FILE or a systemd credential (redacted in 'config show')", env="SMKI_DATABASE_URL",
            flag="smki ca init --database-url", secret=False, from_file=True),
    # -- keys ------------------------------------------------------------------------------------------
    Setting("key-backend", STRING, "file", "where the CA keys live: encrypted PKCS#8 files in <home>/keys, "
            "or a PKCS#11 token", flag="smki ca init --keys", choices=("file", "pkcs11")),
    Setting("pkcs11-module", STRING, "", "the PKCS#11 module (.so) with key-backend = pkcs11",
            flag="smki ca init --module"),
    Setting("pkcs11-token", STRING, "", "the token label", flag="smki ca init --token"),
    Setting("pkcs11-session-keys", BOOLEAN, True, "sign with per-session copies of the key (docs/hsm.md)"),
    Setting("key-passphrase", STRING, "", "the CA key files' passphrase (file backend); a prompt on a terminal",
            env="SMKI_KEY_PASSPHRASE", secret=True, toml=False),
    Setting("pkcs11-pin", STRING, "", "the token PIN (pkcs11 backend); a prompt on a terminal",
            env="SMKI_PKCS11_PIN", secret=True, toml=False),
    Setting("p12-password", STRING, "", "the password of PKCS#12 credentials 'smki ... credential issue' writes",
            env="SMKI_P12_PASSWORD", secret=True, toml=False),
    # -- profiles --------------------------------------------------------------------------------------
    Setting("device-policy-oid", STRING, "1.2.826.0.1.1800000.1.2.1.4", "certificate policy of Device "
            "Certificates (spec §4.3: test-environment value)", empty_ok=False, oid=True),
    Setting("organisation-policy-oid", STRING, "1.2.826.0.1.8641679.1.2.1.4",
            "certificate policy of Organisation Certificates", empty_ok=False, oid=True),
    Setting("hw-type-oids", STRINGS, ["1.2.826.0.1.8641679.1.2.2.1", "1.2.826.0.1372.1.1.2.1"],
            "hwTypes a Device CSR may carry (spec §7.4); any other is refused (csr.hw-type)", empty_ok=False,
            oid=True),
    Setting("hw-type-oid", STRING, "", "before spec §7.4: a single hwType (read as hw-type-oids = [it])",
            deprecated=True, oid=True),
    Setting("root-name", STRING, "SMKI Root", "the Root's common name", empty_ok=False, ca_name=True),
    Setting("organisation-ca-name", STRING, "Z1", "the Organisation CA's common name", empty_ok=False,
            ca_name=True),
    Setting("device-ca-name", STRING, "E357", "the Device CA's common name", empty_ok=False, ca_name=True),
    Setting("root-validity-years", INTEGER, 25, "Root certificate validity", minimum=1, maximum=MAX_VALIDITY_YEARS),
    Setting("ca-validity-years", INTEGER, 25, "Organisation CA and Device CA validity", minimum=1,
            maximum=MAX_VALIDITY_YEARS),
    Setting("organisation-validity-years", INTEGER, 10, "Organisation Certificate validity", minimum=1,
            maximum=MAX_VALIDITY_YEARS),
    # -- revocation ------------------------------------------------------------------------------------
    # At most a year: a list is re-signed well before its nextUpdate, and a larger value (once, years
    # beyond 9999) failed only when the list was signed, after a revocation had committed.
    Setting("crl-next-update-hours", INTEGER, 24, "the CRL's nextUpdate after thisUpdate (at most a year)", minimum=1,
            maximum=366 * 24),
    Setting("arl-next-update-days", INTEGER, 30, "the ARL's nextUpdate after thisUpdate (at most a year)", minimum=1,
            maximum=366),
    # -- registration authority -----------------------------------------------------------------------
    Setting("evidence-basis", STRING, "installation-need", "what Device applications are decided on (spec §2.1)",
            choices=("installation-need", "registered-user")),
    Setting("enforce-role-usages", BOOLEAN, True, "refuse an Organisation CSR whose key usage its role does not "
            "have (spec §7.3, csr.role-usage); the table can be replaced in [role-usages]"),
    Setting("reissue-organisation-same-key", BOOLEAN, True, "an expired or not-in-use Organisation Certificate "
            "may be re-issued for the same key and subject (spec §7.6); other key reuse is csr.duplicate"),
    Setting("eligible-subscriber-check", BOOLEAN, True, "SEC L3.16 Eligible Subscribers on batched and Portal "
            "Device CSRs (rule device.eligible-subscriber, docs/policy.md); rows can be changed in [eligibility]"),
    Setting("csr-signature-check", STRING, "libcrypto", "how a Device CSR's self-signature (proof of possession) "
            "is verified: libcrypto (the system's OpenSSL 3 through ctypes, with one reusable key; cryptography "
            "where it cannot be loaded) or cryptography (a key object made per CSR: ~20 µs more per CSR); both "
            "give the same answers (docs/performance.md)", env="SMKI_CSR_SIGNATURE_CHECK",
            choices=("libcrypto", "cryptography")),
    Setting("staff", STRING, "", "the RA staff member acting, for RA commands", env="SMKI_STAFF",
            flag="--as", toml=False),
    Setting("actor", STRING, "", "who the audit log names for CA-operator commands (default operator:<user>)",
            env="SMKI_ACTOR", toml=False),
    # -- logs ------------------------------------------------------------------------------------------
    Setting("log-level", STRING, "info", "smki serve's log level (one-shot commands log warnings only, or "
            "SMKI_LOG_LEVEL)", env="SMKI_LOG_LEVEL", flag="smki serve --log-level",
            choices=("debug", "info", "warning", "error", "critical")),
    Setting("log-format", STRING, "auto", "json (one object per line), text, or auto: text on a terminal, "
            "else json", env="SMKI_LOG_FORMAT", flag="smki serve --log-format", choices=("auto", "json", "text")),
    Setting("debug", BOOLEAN, False, "show Python tracebacks for internal errors", env="SMKI_DEBUG", toml=False),
    # -- [api]: smki serve ----------------------------------------------------------------------------
    Setting("api.gateway", LISTEN, "127.0.0.1:8443", "the DCC Gateway listener (mutual TLS)",
            flag="smki serve --gateway", empty_ok=False),
    Setting("api.spoti", LISTEN, "127.0.0.1:8444", "the SPOTI listener; empty switches it off",
            flag="smki serve --spoti"),
    Setting("api.spoti-enabled", BOOLEAN, True, "false switches the SPOTI listener off",
            flag="smki serve --no-spoti"),
    Setting("api.server-names", STRINGS, ["127.0.0.1", "localhost"],
            "subject alternative names of the listeners' server certificate", empty_ok=False, host_names=True),
    Setting("api.workers", INTEGER, 1, "server processes, each serving both listeners (PostgreSQL for more "
            "than one)", flag="smki serve --workers", minimum=1),
    Setting("api.batch-workers", INTEGER, None, "signing processes per running batch (0: in the server "
            "process; unset: one per core)", flag="smki serve --batch-workers", minimum=0),
    Setting("api.max-body", INTEGER, 262144, "largest request body in bytes (all but batch submission)",
            minimum=1024),
    Setting("api.max-batch-body", INTEGER, 67108864, "largest batch submission body in bytes", minimum=1024),
    Setting("api.body-timeout", NUMBER, 30.0, "seconds a request body may make no progress before it is refused "
            "(408 request.timeout); a stopping server allows 2 s", minimum=0.1, maximum=3600),
    Setting("api.head-timeout", NUMBER, 30.0, "seconds a connection may take to send a complete request head, "
            "from its start or its previous response (then closed; 408 request.timeout if part had come)",
            minimum=0.1, maximum=3600),
    Setting("api.handshake-timeout", NUMBER, 10.0, "seconds a connection may take to complete its TLS handshake "
            "(then closed and logged)", minimum=0.1, maximum=300),
    Setting("api.send-timeout", NUMBER, 60.0, "seconds a response may wait for a client that stopped reading it "
            "(no write progress) before the connection is closed and logged", minimum=0.1, maximum=3600),
    Setting("api.repository-apikey", STRING, "", "if set, the XML Repository services also need ?apikey=<this>",
            secret=True),
    Setting("api.batch-lease", NUMBER, 60.0, "seconds without a heartbeat after which another process (node) "
            "takes a batch over", minimum=1),
    Setting("api.batch-poll", NUMBER, 0.5, "seconds between the batch runner's looks for new jobs", minimum=0.001),
    Setting("api.crl-check-seconds", NUMBER, 300, "seconds between checks that the CRL/ARL need re-signing",
            minimum=1),
    Setting("api.admin", LISTEN, "", "the admin listener (plain HTTP: /healthz, /readyz, /metrics); empty: off. "
            "Keep it on loopback or a management network", flag="smki serve --admin"),
    # -- [capacity] ------------------------------------------------------------------------------------
    Setting("capacity.enabled", BOOLEAN, True, "false switches every capacity limit off"),
    *_limit_settings(),
    # -- [batches]: the batch lifecycle (SEC Appendix M App. D) -----------------------------------------
    Setting("batches.auto-approve-max", INTEGER, 50000, "batches of up to this many CSRs are approved at once; "
            "larger ones stay PENDING until an RA approver decides (0: every batch waits)", minimum=0),
    Setting("batches.window", WINDOW, "", "processing window HH:MM-HH:MM in UK local time (the DCC's: 20:00-08:00); "
            "outside it queued batches are PAUSED; empty: no window"),
)

BY_KEY: dict[str, Setting] = {s.key: s for s in SETTINGS}
SECTIONS = ("", "api", "capacity", "batches")
#: ``[role-usages]``: Remote Party Role (two hex digits) = list of usages (spec §7.3).
ROLE_USAGES_SECTION = "role-usages"
#: ``[eligibility]``: SMI status (or ``unknown``) = list of who may request (SEC L3.16, docs/policy.md).
ELIGIBILITY_SECTION = "eligibility"
_ELIGIBILITY_ROWS = {"unknown", "pending", "whitelisted", "installed-not-commissioned", "commissioned",
                     "decommissioned", "withdrawn", "suspended", "recovery", "recovered"}
_ELIGIBLE = {"any", "supplier", "network-operator", "dcc"}
#: Keys a table may hold under ``capacity.<any limit>``.
_LIMIT_KEYS = {"capacity", "period", "off-peak-period", "enabled", "reference"}


def _setting_for(key: str) -> Setting | None:
    found = BY_KEY.get(key)
    if found is not None:
        return found
    parts = key.split(".")
    if len(parts) == 3 and parts[0] == "capacity" and parts[2] in _LIMIT_KEYS:
        return _further_limit(parts[1])[parts[2]]
    return None


def _further_limit(name: str) -> dict[str, Setting]:
    """The settings of ``[capacity.<name>]`` for a limit the model does not name (no capacity: off)."""
    template = {s.name: s for s in SETTINGS if s.section == "capacity.batch-csrs"}
    defaults = {"capacity": 0, "period": DAY, "off-peak-period": None, "enabled": True, "reference": ""}
    return {part: Setting(f"capacity.{name}.{part}", setting.type, defaults[part], setting.doc,
                          minimum=setting.minimum) for part, setting in template.items()}


def _type_ok(setting: Setting, value: Any) -> bool:
    if value is None:
        return False
    if setting.type == BOOLEAN:
        return isinstance(value, bool)
    if setting.type == INTEGER:
        return isinstance(value, int) and not isinstance(value, bool)
    if setting.type == NUMBER:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if setting.type == STRINGS:
        return isinstance(value, list) and all(isinstance(v, str) and v for v in value)
    return isinstance(value, str)


def database_url_problem(url: str) -> str | None:
    """Why smki cannot use ``url`` as its store, or None: SQLite, or PostgreSQL through psycopg 3.

    One rule for ``config check`` and the store's engine (``smki.store.engine``): a URL the
    engine would refuse is refused when the configuration is read, not at the first command
    that opens the store."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return f"not a database URL: {url!r}"
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return None
    if backend == "postgresql":
        if parsed.get_driver_name() == "psycopg":
            return None
        return "PostgreSQL URLs must use psycopg 3: postgresql+psycopg://…"
    return f"unsupported database {backend!r}: use sqlite or postgresql+psycopg"


#: A CA name (spec §7.5): PrintableString text of at most 64 characters (X.520's ub-common-name).
#: Checked here so ``config check`` refuses what the key ceremony would (``ca.bad-name``).
MAX_COMMON_NAME = 64
PRINTABLE_STRING = re.compile(r"[A-Za-z0-9 '()+,\-./:=?]+")
_DNS_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def _host_name(name: object) -> bool:
    """Whether ``name`` can be a server certificate's subject alternative name: an IP address, or
    a DNS name of letters, digits and hyphens in dot-separated labels (RFC 1123), at most 253
    characters. ``"bad name!"`` or ``"a..b"`` went into the certificate as given."""
    import ipaddress

    if not isinstance(name, str) or not name:
        return False
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        pass
    return len(name) <= 253 and all(_DNS_LABEL.fullmatch(label) for label in name.split("."))


def _check_value(setting: Setting, value: Any, name: str = "") -> None:
    """Refuse a value of the wrong type or out of range; ``name`` is how the error calls it
    (the key for the file, ``SMKI_X (key)`` for the environment, ``--flag (key)`` for a flag)."""
    key = name or setting.key
    if not _type_ok(setting, value):
        raise ConfigError("config.invalid", f"{key}: expected {setting.type}, got {value!r}")
    if setting.choices and value not in setting.choices:
        raise ConfigError("config.invalid", f"{key}: must be one of {', '.join(setting.choices)}, not {value!r}")
    if isinstance(value, float) and not math.isfinite(value):  # nan passes every comparison; inf every minimum
        raise ConfigError("config.invalid", f"{key}: must be a finite number, not {value!r}")
    if setting.minimum is not None and value < setting.minimum:
        raise ConfigError("config.invalid", f"{key}: must be at least {setting.minimum:g}, not {value!r}")
    if setting.maximum is not None and value > setting.maximum:
        raise ConfigError("config.invalid", f"{key}: must be at most {setting.maximum:g}, not {value!r}")
    if setting.ca_name and value and (len(value) > MAX_COMMON_NAME or not PRINTABLE_STRING.fullmatch(value)):
        raise ConfigError("config.invalid", f"{key}: a CA name is 1 to {MAX_COMMON_NAME} characters of "
                                            f"PrintableString text (letters, digits, space and '()+,-./:=?), "
                                            f"not {value!r}")
    if setting.host_names:
        for name in value:
            if not _host_name(name):
                raise ConfigError("config.invalid", f"{key}: {name!r} is neither a DNS name nor an IP address")
    if setting.oid:
        for oid in value if isinstance(value, list) else [value] if value else []:
            if not re.fullmatch(r"[0-2](\.(0|[1-9][0-9]*))+", oid):
                raise ConfigError("config.invalid", f"{key}: {oid!r} is not an object identifier (e.g. 1.2.826.0.1)")
    if not setting.empty_ok and not value:
        raise ConfigError("config.invalid", f"{key}: must not be empty")
    if setting.key == "database-url" and value and (problem := database_url_problem(str(value))):
        raise ConfigError("config.invalid", f"{key}: {problem}")
    if setting.type == LISTEN and value:
        Listen.parse(value, key)
    if setting.type == WINDOW and value:
        match = re.fullmatch(r"(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})", value.strip())
        if not match or int(match[1]) > 23 or int(match[3]) > 23 or int(match[2]) > 59 or int(match[4]) > 59:
            raise ConfigError("config.invalid", f"{key}: must be HH:MM-HH:MM (UK local time), not {value!r}")


def _from_environment(setting: Setting, text: str, name: str) -> Any:
    """An environment variable's text as the setting's type (lists are comma-separated)."""
    try:
        if setting.type == BOOLEAN:
            if text.strip().lower() not in _TRUE | _FALSE:
                raise ValueError(text)
            return text.strip().lower() in _TRUE
        if setting.type == INTEGER:
            return int(text)
        if setting.type == NUMBER:
            return float(text)
    except ValueError:
        raise ConfigError("config.invalid", f"{name}: expected {setting.type}, got {text!r}") from None
    if setting.type == STRINGS:
        return [part.strip() for part in text.split(",") if part.strip()]
    return text


def _typed(setting: Setting, value: Any) -> Any:
    """The value components use: a :class:`Listen` (None when empty), a tuple for a list, a float
    for a number."""
    if value is None:
        return None
    if setting.type == LISTEN:
        return Listen.parse(value, setting.key) if value else None
    if setting.type == STRINGS:
        return tuple(value)
    if setting.type == NUMBER:
        return float(value)
    return value


def _flag_name(setting: Setting) -> str:
    names = re.findall(r"--[\w-]+", setting.flag)
    return names[-1] if names else setting.key


def default(key: str) -> Any:
    """The typed default of ``key`` (what a component uses when nothing sets it)."""
    setting = BY_KEY[key]
    return _typed(setting, setting.default)


FILE_SUFFIX = "_FILE"
#: Where systemd's ``LoadCredential=`` / ``SetCredential=`` put a service's credentials.
CREDENTIALS_DIRECTORY = "CREDENTIALS_DIRECTORY"
#: The start of a source (``Resolved.sources``) that is the environment or a file it names: such a
#: value is never written to ``smki.toml``.
ENVIRONMENT_SOURCES = ("env ", "file ", "credential ")


def _secret_file_text(path: str, variable: str, *, owner_only: bool = True) -> str:
    """The text of a secret's file, trailing newline removed, after the checks ``key.permissions``
    makes of a key file: a regular file only its owner may read (a copy is the secret itself).

    ``owner_only=False`` for a systemd credential: systemd itself restricts it to the unit's user,
    and may do so with an ACL, which shows in the mode's group bits (0440) without widening access."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise ConfigError("secret.file-missing", f"{variable}: no file {path}") from None
    except OSError as exc:
        raise ConfigError("secret.file-unreadable", f"{variable}: cannot read {path}: {exc.strerror}") from None
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise ConfigError("secret.file-unreadable", f"{variable}: {path} is not a regular file")
        mode = stat.S_IMODE(status.st_mode)
        if owner_only and mode & 0o077:
            raise ConfigError("secret.file-permissions", f"{variable}: {path} is accessible to others (mode "
                              f"{mode:04o}): run 'chmod 600 {path}' (and change the secret if others read it)")
        with os.fdopen(os.dup(fd), "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise ConfigError("secret.file-unreadable", f"{variable}: cannot read {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    text = data.decode("utf-8", "surrogateescape").rstrip("\r\n")  # the file's own bytes, as a variable's
    if not text:
        raise ConfigError("secret.file-empty", f"{variable}: {path} is empty")
    return text


def _environment_text(setting: Setting, environ: Mapping[str, str]) -> tuple[str, str]:
    """The text of ``setting`` from the environment and where it came from: its variable
    (``env X``), the file ``X_FILE`` names (``file X_FILE``) or the systemd credential ``X``
    (``credential X``); ("", "") when none is set. More than one is refused (``secret.conflict``).

    A value read from a file is returned, never put in the environment: ``/proc/PID/environ`` of
    the process and of every process forked from it keeps only the file's name."""
    text = environ.get(setting.env, "") if setting.env else ""
    if not setting.file_capable:
        return (text, f"env {setting.env}") if text else ("", "")
    file_variable = setting.env + FILE_SUFFIX
    path = environ.get(file_variable, "")
    directory = environ.get(CREDENTIALS_DIRECTORY, "")
    credential = f"{directory.rstrip('/')}/{setting.env}" if directory else ""
    has_credential = bool(credential) and os.path.lexists(credential)
    given = [name for name, present in ((setting.env, bool(text)), (file_variable, bool(path)),
                                        (f"the systemd credential {setting.env}", has_credential)) if present]
    if len(given) > 1:
        raise ConfigError("secret.conflict", f"{', '.join(given[:-1])} and {given[-1]} are set: give "
                          f"{setting.key} one way only")
    if text:
        return text, f"env {setting.env}"
    if path:
        return _secret_file_text(path, file_variable), f"file {file_variable}"
    if has_credential:
        return (_secret_file_text(credential, f"{CREDENTIALS_DIRECTORY}/{setting.env}", owner_only=False),
                f"credential {setting.env}")
    return "", ""


def environment(key: str, environ: Mapping[str, str] | None = None) -> Any:
    """The setting ``key`` from its environment variable (checked, typed), or its default: for what
    is read before (or without) a home, such as secrets, the actor and the first log level. A
    secret (and the database URL) may instead come from the file ``<variable>_FILE`` names or the
    systemd credential ``<variable>`` (:func:`_environment_text`)."""
    setting = BY_KEY[key]
    text, source = _environment_text(setting, os.environ if environ is None else environ)
    if not text:
        return _typed(setting, setting.default)
    name = f"{source.partition(' ')[2]} ({setting.key})"
    value = _from_environment(setting, text, name)
    _check_value(setting, value, name)
    return _typed(setting, value)


def secret_env_names() -> tuple[str, ...]:
    """The environment variables that carry secrets (passphrase, PIN, passwords): what a process
    smki starts by ``exec`` must not inherit (:func:`smki.services.procguard.secrets_withheld`).
    Each may instead be given as ``<name>_FILE`` or a systemd credential (:func:`file_env_names`)."""
    return tuple(s.env for s in SETTINGS if s.secret and s.env)


def file_env_names() -> tuple[str, ...]:
    """The environment variables whose value may come from a file: ``<name>_FILE`` (a path) or
    ``$CREDENTIALS_DIRECTORY/<name>`` (systemd's ``LoadCredential=<name>:…``)."""
    return tuple(s.env for s in SETTINGS if s.file_capable)


def env_name(key: str) -> str:
    """The environment variable of ``key`` (for messages and Typer's ``envvar``)."""
    return BY_KEY[key].env


@dataclass(frozen=True)
class Resolved:
    """Every setting's typed value and where it came from (``default``, ``smki.toml``, ``env X``,
    ``flag --x``); plus ``role-usages`` and ``eligibility``, the tables as given (validated)."""

    values: dict[str, Any]
    sources: dict[str, str]


def resolve(document: Mapping[str, Any], environ: Mapping[str, str] | None = None,
            flags: Mapping[str, Any] | None = None, where: str = "smki.toml") -> Resolved:
    """The configuration in force: defaults < ``smki.toml`` < environment < command-line flags.

    ``flags`` maps setting keys to the flag's value (None: not given). Anything unknown or of the
    wrong type is a :class:`ConfigError` naming the key (or the variable, or the flag).
    """
    found = _read_document(document, where)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for table in (ROLE_USAGES_SECTION, ELIGIBILITY_SECTION):
        values[table] = found.pop(table, {})
        sources[table] = "smki.toml" if values[table] else "default"
    if "hw-type-oid" in found and "hw-type-oids" not in found and found["hw-type-oid"]:
        found["hw-type-oids"] = [found["hw-type-oid"]]  # before spec §7.4: a single hwType
    further = sorted({key.split(".")[1] for key in found if key.count(".") == 2 and key.startswith("capacity.")}
                     - set(_LIMITS))
    settings = [s for s in SETTINGS if not s.deprecated]
    settings += [s for name in further for s in _further_limit(name).values()]
    for setting in settings:
        value, source = setting.default, "default"
        if setting.key in found:
            value, source = found[setting.key], "smki.toml"
        text, from_where = _environment_text(setting, environ or {})
        if text:
            name = f"{from_where.partition(' ')[2]} ({setting.key})"
            value, source = _from_environment(setting, text, name), from_where
            _check_value(setting, value, name)
        flagged = (flags or {}).get(setting.key)
        if flagged is not None:
            name = f"{_flag_name(setting)} ({setting.key})"
            value, source = flagged, f"flag {_flag_name(setting)}"
            _check_value(setting, value, name)
        values[setting.key], sources[setting.key] = _typed(setting, value), source
    return Resolved(values, sources)


def sectioned(values: Mapping[str, Any]) -> dict[str, Any]:
    """The values not at the top level: every ``section.key`` and the two tables."""
    return {key: value for key, value in values.items() if "." in key or key in (ROLE_USAGES_SECTION,
                                                                                   ELIGIBILITY_SECTION)}


def section_defaults() -> dict[str, Any]:
    """The typed defaults of every sectioned key (``Settings()`` without a file)."""
    return sectioned(resolve({}).values)


def limit_names(values: Mapping[str, Any]) -> list[str]:
    """The capacity limits in ``values``: the SEC's four and any ``[capacity.<name>]`` a file adds."""
    return [key.split(".")[1] for key in values if key.startswith("capacity.") and key.endswith(".capacity")]


def check_document(data: Mapping[str, Any], where: str = "smki.toml") -> None:
    """Refuse an unknown key or a bad value in a parsed ``smki.toml``, naming the key."""
    resolve(data, {}, {}, where)


def _read_document(data: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The file's values by dotted key, each checked; ``[role-usages]`` / ``[eligibility]`` as tables."""
    found: dict[str, Any] = {}

    def walk(table: Mapping[str, Any], prefix: str) -> None:
        for name, value in table.items():
            key = f"{prefix}{name}"
            if prefix.startswith("capacity."):
                key = key.replace("_", "-")
            setting = _setting_for(key)
            if setting is not None and setting.toml:
                _check_value(setting, value)
                found[key] = value
                continue
            is_table = isinstance(value, dict)
            if is_table and (key in ("api", "capacity", "batches") or (prefix == "capacity." and name != "enabled")):
                walk(value, f"{key}.")
            elif is_table and key == "api.capacity":  # the older spelling of [capacity]
                walk(value, "capacity.")
            elif is_table and key == ROLE_USAGES_SECTION:
                _check_role_usages(value, where)
                found[key] = {role.upper(): tuple(usages) for role, usages in value.items()}
            elif is_table and key == ELIGIBILITY_SECTION:
                _check_eligibility(value, where)
                found[key] = {status: tuple(who) for status, who in value.items()}
            else:
                raise ConfigError("config.unknown-key", f"{where}: unknown setting {key!r}")

    walk(data, "")
    return found


def _check_role_usages(table: Mapping[str, Any], where: str) -> None:
    for role, usages in table.items():
        key = f"{ROLE_USAGES_SECTION}.{role}"
        if not re.fullmatch(r"[0-9A-Fa-f]{2}", role):
            raise ConfigError("config.invalid", f"{where}: {key}: a role is two hex digits, e.g. \"02\"")
        from smki.domain import RemotePartyRole

        if int(role, 16) not in {member.value for member in RemotePartyRole}:
            raise ConfigError("config.invalid", f"{where}: {key}: not a Remote Party Role")
        if not isinstance(usages, list) or not set(usages) <= {"DS", "KA"}:
            raise ConfigError("config.invalid", f"{where}: {key}: expected a list of \"DS\" / \"KA\"")


def _check_eligibility(table: Mapping[str, Any], where: str) -> None:
    for status, who in table.items():
        key = f"{ELIGIBILITY_SECTION}.{status}"
        if status not in _ELIGIBILITY_ROWS:
            raise ConfigError("config.invalid", f"{where}: {key}: not an SMI status or 'unknown'")
        if not isinstance(who, list) or not set(who) <= _ELIGIBLE:
            raise ConfigError("config.invalid", f"{where}: {key}: expected a list of "
                              f"{', '.join(sorted(_ELIGIBLE))}")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


def render_toml(values: Mapping[str, Any] | None = None) -> str:
    """A commented ``smki.toml``: the top-level keys with their values, every section commented out.

    The sections stay commented (defaults apply) so that an operator uncomments only what changes.
    """
    values = values or {}
    lines = ["# smki configuration: every setting, with its default. Reference: docs/configuration.md",
             "# Defaults are the SMKI test-environment values (spec §4). Secrets are never read from here:",
             "# SMKI_KEY_PASSPHRASE / SMKI_PKCS11_PIN / SMKI_P12_PASSWORD come from the environment, a file",
             "# named by <variable>_FILE, a systemd credential <variable>, or a prompt.",
             ""]
    for section in SECTIONS:
        members = [s for s in SETTINGS if s.toml and not s.deprecated and s.section.split(".")[0] == section]
        if section:
            lines += ["", f"# --- {section} " + "-" * (80 - len(section))]
        current = None
        for setting in members:
            if setting.section != current and setting.section:
                current = setting.section
                lines += ["", f"#[{current}]"]
            comment = setting.doc + (f" (env {setting.env})" if setting.env else "") + \
                (f"; flag {setting.flag}" if setting.flag else "")
            lines.append(f"# {comment}")
            if section:
                value = setting.default
                lines.append(f"#{setting.name} = {_toml_value(value)}" if value is not None else f"#{setting.name} =")
            else:
                lines.append(f"{setting.name} = {_toml_value(values.get(setting.key, setting.default))}")
    return "\n".join(lines) + "\n"


def _md(value: Any) -> str:
    if value is None or value == "":
        return "(unset)"
    return f"`{_toml_value(value)}`"


def render_markdown() -> str:
    """``docs/configuration.md``."""
    out = [
        "# Configuration reference",
        "",
        "<!-- Generated from smki/settings_model.py by `python -m smki.settings_model docs/configuration.md`;",
        "     tests/ops/test_config.py fails when this file is stale. -->",
        "",
        "Every setting of smki: its key in `<home>/smki.toml`, its environment variable and its command-line",
        "flag where it has one. An environment variable overrides the file; a flag overrides both.",
        "`smki config show` prints the effective values (secrets redacted); `smki config check` validates",
        "the file and the environment and exits 1 naming the first bad key. Every command refuses an",
        "unknown key or a value of the wrong type, so a misspelling is never silently ignored; a bad",
        "environment variable or flag is refused the same way, naming it (`SMKI_LOG_LEVEL (log-level): …`,",
        "`--admin (api.admin): …`). Booleans in the environment are 1/0, true/false, yes/no or on/off.",
        "Secrets (the key passphrase, the PIN, PKCS#12 passwords) are never read from `smki.toml`: they come",
        "from the environment, from a file, or from a prompt on a terminal.",
        "",
        "## Secrets from files",
        "",
        "Each variable marked (file) below (every secret, and `SMKI_DATABASE_URL`, which may hold a",
        "password) may instead be given",
        "",
        "* as `<VARIABLE>_FILE`: the path of a file holding the value (trailing line breaks removed), e.g.",
        "  `SMKI_KEY_PASSPHRASE_FILE=/etc/smki/key-passphrase`;",
        "* as a systemd credential named after the variable: `$CREDENTIALS_DIRECTORY/<VARIABLE>`, which",
        "  `LoadCredential=SMKI_KEY_PASSPHRASE:/etc/smki/key-passphrase` provides (docs/deployment.md).",
        "",
        "A value read from a file is never put in the environment, so `/proc/<pid>/environ` of `smki serve`",
        "and of every process it starts holds only the file's name. The file must be a regular file that",
        "only its owner may read or write (`chmod 600`, as for key files); otherwise the command stops with",
        "one line: `secret.file-missing`, `secret.file-unreadable`, `secret.file-empty` or",
        "`secret.file-permissions`. Giving one setting two ways (the variable and `_FILE`, or either and a",
        "credential) is refused `secret.conflict`. `smki config show` names the source (`file …_FILE`,",
        "`credential …`). `smki serve` given a secret as the plain variable (or `SMKI_DATABASE_URL` with a",
        "password in it) starts, but logs a warning naming it: the processes it starts never inherit it, yet",
        "its own `/proc/<pid>/environ` keeps it for as long as it runs.",
        "",
    ]
    titles = {"": "Top level", "api": "`[api]`: `smki serve`", "capacity": "`[capacity]`: per-Party limits",
              "batches": "`[batches]`: the batch lifecycle (approval, processing window)"}
    for section in SECTIONS:
        out += [f"## {titles[section]}", "", "| key | type | default | env | flag | what |",
                "|---|---|---|---|---|---|"]
        for s in SETTINGS:
            if s.section.split(".")[0] != section:
                continue
            key = f"`{s.key}`" if s.toml else f"({s.key}, environment only)"
            kind = s.type + (f": {' / '.join(s.choices)}" if s.choices else "") + (" (secret)" if s.secret else "")
            env = f"`{s.env}`" + (" (file)" if s.file_capable else "") if s.env else ""
            out.append(f"| {key} | {kind} | {_md(s.default)} | {env} | "
                       f"{f'`{s.flag}`' if s.flag else ''} | {s.doc} |")
        if section == "capacity":
            out += ["", "Any other `[capacity.<name>]` table defines a further limit with the same keys "
                    "(and `reference`, quoted when it refuses)."]
        if section == "":
            out += ["", "`[role-usages]` (optional): replaces rows of the role → usages table Organisation CSRs "
                    "are held to (spec §7.3), e.g. `\"06\" = [\"DS\", \"KA\"]`; roles it leaves out keep "
                    "the default.", "",
                    "`[eligibility]` (optional): replaces rows of the Eligible Subscriber table (SEC L3.16, "
                    "docs/policy.md): an SMI status, or `unknown` for Device IDs the register does not know, "
                    "= a list of `any`, `supplier`, `network-operator`, `dcc`; e.g. `unknown = []` refuses "
                    "Devices the register does not know."]
        out.append("")
    return "\n".join(out)


def effective(resolved: Resolved) -> list[tuple[str, str, str]]:
    """(key, value, source) of every setting, for ``smki config show``: secrets redacted, the
    database URL without its password."""
    rows = []
    for key, value in resolved.values.items():
        setting = _setting_for(key)
        if setting is None:  # [role-usages] / [eligibility]: shown when a file changes them
            if value:
                rows.append((key, ", ".join(f"{k} = {list(v)}" for k, v in value.items()), resolved.sources[key]))
            continue
        if setting.secret and value:
            shown = "[redacted]"
        elif key == "database-url" and value:
            from sqlalchemy.engine import make_url

            shown = make_url(str(value)).render_as_string(hide_password=True)
        elif value is None or value == "":
            shown = "(unset)"
        else:
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            shown = str(value) if isinstance(value, Listen) else _toml_value(value).strip('"')
        rows.append((key, shown, resolved.sources[key]))
    return rows


if __name__ == "__main__":
    import sys

    text = render_markdown()
    if len(sys.argv) > 1:
        with open(sys.argv[1], "w", encoding="utf-8") as handle:
            handle.write(text)
    else:
        sys.stdout.write(text)
