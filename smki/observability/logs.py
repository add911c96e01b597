"""Structured logs: one JSON object per line on stderr (or a readable line on a terminal).

``configure_logging(level, fmt)`` is called once per process by the CLI entry point and again by
``smki serve`` with the home's ``log-level`` / ``log-format``. Formats:

* ``json``: python-json-logger, one object per line with ``time``, ``level``, ``logger``,
  ``message`` and every field passed in ``extra=``;
* ``text``: ``time level logger message key=value ...`` for a person at a terminal;
* ``auto`` (the default): ``text`` when stderr is a terminal, else ``json``.

Secrets never reach a log line. :class:`RedactingFilter` sits on the handler and rewrites the
message and every extra field: values registered with :func:`register_secret` (the key
passphrase or PIN, PKCS#12 passwords, the Repository API key) and anything shaped like a PEM
private key or a keyed ``passphrase=`` / ``pin=`` / ``password=`` / ``token=`` pair become
``[redacted]``. The access log never records a query string's secret values in the first place
(:func:`safe_path`).
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from datetime import UTC, datetime
from typing import Any, TextIO
from urllib.parse import parse_qsl, urlencode

LEVELS = ("debug", "info", "warning", "error", "critical")
FORMATS = ("auto", "json", "text")
REDACTED = "[redacted]"
#: Query parameters and form fields whose values are never logged.
SECRET_NAMES = frozenset({"apikey", "api_key", "token", "csrf", "csrf_token", "password", "passphrase", "pin",
                          "secret", "key", "p12_password"})
_PEM_KEY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|$)", re.S)
_KEYED = re.compile(r"(?i)\b(passphrase|password|pin|token|apikey|api_key|secret)(\s*[=:]\s*)([^\s&,;\"']+)")
#: LogRecord attributes that are not extra fields.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}

_secrets: set[str] = set()
_lock = threading.Lock()


def register_secret(value: str | bytes | None) -> None:
    """Never log ``value`` (a passphrase, PIN, password or API key), wherever it turns up."""
    if not value:
        return
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    if len(text) >= 4:  # a shorter "secret" would redact ordinary words
        with _lock:
            _secrets.add(text)


def redact(text: str) -> str:
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, REDACTED)
    text = _PEM_KEY.sub(REDACTED, text)
    return _KEYED.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, bytes):
        return redact(value.decode("utf-8", "replace"))
    return value


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.msg = record.getMessage()
            record.args = None
        record.msg = redact(str(record.msg))
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
            record.exc_info = None  # formatters would render the exception again, unredacted
        for name, value in list(vars(record).items()):
            if name not in _STANDARD:
                setattr(record, name, REDACTED if name.lower() in SECRET_NAMES else _redact_value(value))
        return True


def safe_path(path: str, query: bytes | str = b"") -> str:
    """The path with the query string's secret values replaced (names kept, so the log says what was sent)."""
    raw = query.decode("latin-1") if isinstance(query, bytes) else query
    if not raw:
        return path
    pairs = [(k, REDACTED if k.lower() in SECRET_NAMES else v) for k, v in parse_qsl(raw, keep_blank_values=True)]
    return f"{path}?{urlencode(pairs, safe='[]')}"


def _time(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TextFormatter(logging.Formatter):
    """``2026-12-06T00:41:02.113Z INFO smki.access GET /api/v1/whoami status=200 ...``"""

    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(f"{k}={v}" for k, v in vars(record).items() if k not in _STANDARD)
        line = f"{_time(record)} {record.levelname} {record.name} {record.getMessage()}"
        if extras:
            line += " " + extras
        if record.exc_text:
            line += "\n" + record.exc_text
        return line


def _json_formatter() -> logging.Formatter:
    from pythonjsonlogger.json import JsonFormatter

    class _Formatter(JsonFormatter):
        def add_fields(self, log_record: dict[str, Any], record: logging.LogRecord,
                       message_dict: dict[str, Any]) -> None:
            log_record["time"] = _time(record)
            log_record["level"] = record.levelname.lower()
            log_record["logger"] = record.name
            super().add_fields(log_record, record, message_dict)

    return _Formatter("%(message)s", rename_fields={"exc_info": "exception"}, json_ensure_ascii=False)


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks smki's handler, so configuring again replaces it instead of adding a second one."""


def configure_logging(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    if level not in LEVELS:
        from smki.errors import ConfigError

        raise ConfigError("config.invalid", f"log-level must be one of {', '.join(LEVELS)}, not {level!r}")
    if fmt not in FORMATS:
        from smki.errors import ConfigError

        raise ConfigError("config.invalid", f"log-format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    out = stream or sys.stderr
    if fmt == "auto":
        fmt = "text" if out.isatty() else "json"
    handler = _Handler(out)
    handler.setFormatter(TextFormatter() if fmt == "text" else _json_formatter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # smki writes its own access log; alembic's "Context impl SQLiteImpl" on every schema check is noise.
    for noisy in ("uvicorn.access", "uvicorn.error", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
