"""Structured logs: one JSON object per line on stderr (or a readable line on a terminal).

``configure_logging(level, fmt)`` is called once per process by the CLI entry point and again by
``smki serve`` with the home's ``log-level`` / ``log-format``. Formats:

* ``json``: one object per line with ``time``, ``level``, ``logger``, ``message``, ``exception``
  when there is one, and every field passed in ``extra=`` (:class:`JsonFormatter`);
* ``text``: ``time level logger message key=value ...`` for a person at a terminal;
* ``auto`` (the default): ``text`` when stderr is a terminal, else ``json``.

Secrets never reach a log line. :class:`RedactingFilter` sits on the handler and rewrites the
message and every extra field: values registered with :func:`register_secret` (the key
passphrase or PIN, PKCS#12 passwords, the Repository API key) and anything shaped like a PEM
private key or a keyed ``passphrase=`` / ``pin=`` / ``password=`` / ``token=`` pair become
``[redacted]``. The access log never records a query string's secret values in the first place
(:func:`safe_path`), and screens its line where it makes it (:class:`ScreenedRecord`).

Every request writes a line (:mod:`smki.observability.access`), so this is on the hot path of
every request: :func:`redact` checks cheaply whether a text could hold anything to redact before
it runs a substituting expression, and the JSON formatter encodes one flat dict (it replaced
python-json-logger, whose chain of field merges cost more than the rest of a cheap request; see
docs/performance.md, "The access log and request metrics, per request").
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from datetime import date
from datetime import time as clock
from enum import Enum
from typing import Any, TextIO
from urllib.parse import quote_plus, unquote_plus

LEVELS = ("debug", "info", "warning", "error", "critical")
FORMATS = ("auto", "json", "text")
REDACTED = "[redacted]"
#: Query parameters and form fields whose values are never logged.
SECRET_NAMES = frozenset({"apikey", "api_key", "token", "csrf", "csrf_token", "password", "passphrase", "pin",
                          "secret", "key", "p12_password"})
_PEM_KEY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|$)", re.S)
_PEM_HINT = "-----BEGIN "  # every text _PEM_KEY matches holds this
_KEYED = re.compile(r"(?i)\b(passphrase|password|pin|token|apikey|api_key|secret)(\s*[=:]\s*)([^\s&,;\"']+)")
#: Each of _KEYED's words holds one of these: a text holding none of them (compared without case,
#: as _KEYED compares) has no keyed secret, and looking for them is much cheaper than _KEYED.
_HINTS = ("pass", "pin", "token", "apikey", "api_key", "secret")
_KEYED_HINT = re.compile("(?i)" + "|".join(_HINTS))
#: LogRecord attributes that are not extra fields.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}

_secrets: set[str] = set()
#: The registered secrets, longest first (so a secret holding another is replaced whole).
_ordered: tuple[str, ...] = ()
_lock = threading.Lock()


def register_secret(value: str | bytes | None) -> None:
    """Never log ``value`` (a passphrase, PIN, password or API key), wherever it turns up."""
    if not value:
        return
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    global _ordered
    if len(text) >= 4:  # a shorter "secret" would redact ordinary words
        with _lock:
            _secrets.add(text)
            _ordered = tuple(sorted(_secrets, key=len, reverse=True))


def _keyed(match: re.Match[str]) -> str:
    return f"{match.group(1)}{match.group(2)}{REDACTED}"


def redact(text: str) -> str:
    for secret in _ordered:
        if secret in text:
            text = text.replace(secret, REDACTED)
    if _PEM_HINT in text:
        text = _PEM_KEY.sub(REDACTED, text)
    if _may_be_keyed(text):
        text = _KEYED.sub(_keyed, text)
    return text


def _may_be_keyed(text: str) -> bool:
    """Whether ``text`` holds one of :data:`_HINTS`, compared as ``_KEYED`` compares (``(?i)``).

    On ASCII text ``lower()`` compares the same way, and ``in`` is much cheaper than a search.
    Outside ASCII ``(?i)`` also folds the long s (U+017F) to s and the Kelvin sign to k, so the
    search decides."""
    if text.isascii():
        low = text.lower()  # _HINTS written out: a loop over them costs more than the checks
        return "pass" in low or "pin" in low or "token" in low or "apikey" in low or "api_key" in low or "secret" in low
    return _KEYED_HINT.search(text) is not None


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, bytes):
        return redact(value.decode("utf-8", "replace"))
    return value


class ScreenedRecord(logging.LogRecord):
    """A record whose maker already screened it, so :class:`RedactingFilter` passes it as it is.

    Its maker puts every text that came from outside smki (a request's method and path, a
    credential's subject) through :func:`redact` and builds the message from those texts; its
    other fields are numbers and smki's own names and ids. The access log makes one per request
    (:mod:`smki.observability.access`): scanning its message and every field again would screen
    the same text twice.
    """


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record, ScreenedRecord):
            return True
        if record.args:
            record.msg = record.getMessage()
            record.args = None
        record.msg = redact(str(record.msg))
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
            record.exc_info = None  # formatters would render the exception again, unredacted
        fields = vars(record)
        for name in fields.keys() - _STANDARD:
            value = fields[name]
            if name.lower() in SECRET_NAMES:
                fields[name] = REDACTED
            elif isinstance(value, str | bytes):
                fields[name] = _redact_value(value)
        return True


def safe_path(path: str, query: bytes | str = b"") -> str:
    """The path and query string as a log line may show them, screened by :func:`redact`.

    A parameter with a secret's name (``apikey``, ``token``, ``password``, …) keeps its name and
    loses its value, so the log says what was sent. Any other parameter is screened as the
    application reads it, decoded (``%20`` and ``+`` are spaces, ``api%6Bey`` is ``apikey``); one
    that holds no secret stays as the client encoded it. The path (decoded already, as ASGI gives
    it) is screened too.
    """
    shown = redact(path)
    raw = query.decode("latin-1") if isinstance(query, bytes) else query
    if not raw:
        return shown
    pairs = []
    for pair in raw.split("&"):
        name = pair.partition("=")[0]
        if _decoded(name).lower() in SECRET_NAMES:
            pairs.append(f"{name}={REDACTED}")
            continue
        text = _decoded(pair)
        screened = redact(text)
        pairs.append(pair if screened == text else quote_plus(screened, safe="=[]"))
    return f"{shown}?{'&'.join(pairs)}"


def _decoded(text: str) -> str:
    return unquote_plus(text) if "%" in text or "+" in text else text


_second: tuple[int, str] = (-1, "")


def _time(record: logging.LogRecord) -> str:
    """``2026-12-06T00:41:02.113Z``; the part up to the second is made once a second."""
    global _second
    whole = int(record.created)
    second, text = _second
    if whole != second:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        _second = (whole, text)
    return f"{text}.{int(record.msecs):03d}Z"


#: Characters that end or rewrite a line on a terminal or in a file: a line feed, a carriage return,
#: an escape sequence, Unicode's own line separators.
_LINE_BREAKING = re.compile("[\x00-\x1f\x7f\x85\u2028\u2029]")


def _one_line(text: str) -> str:
    """``text`` with every line-breaking or control character written as its escape (``\\n``,
    ``\\x1b``): a request path with an encoded newline (``%0a``) wrote a second, forged log line."""
    return _LINE_BREAKING.sub(lambda found: found.group().encode("unicode_escape").decode("ascii"), text)


class TextFormatter(logging.Formatter):
    """``2026-12-06T00:41:02.113Z INFO smki.access GET /api/v1/whoami status=200 ...``: one line per
    record, whatever its message and fields hold (control characters escaped); then the traceback,
    if any."""

    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(f"{k}={_one_line(str(v))}" for k, v in vars(record).items() if k not in _STANDARD)
        line = f"{_time(record)} {record.levelname} {record.name} {_one_line(record.getMessage())}"
        if extras:
            line += " " + extras
        if record.exc_text:
            line += "\n" + record.exc_text
        return line


def _jsonable(value: Any) -> Any:
    """What a field that JSON has no type for is written as: ISO 8601 for dates and times, an
    enumeration's value, else its text."""
    if isinstance(value, date | clock):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    return str(value)


_ENCODER = json.JSONEncoder(ensure_ascii=False, default=_jsonable)  # made once: json.dumps makes one a call


class JsonFormatter(logging.Formatter):
    """``{"time": ..., "level": ..., "logger": ..., "message": ..., "exception": ..., <extra fields>}``.

    One flat dict, encoded once: a field JSON has no type for is written by :func:`_jsonable`."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {"time": _time(record), "level": record.levelname.lower(), "logger": record.name,
                                "message": record.getMessage()}
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        for name, value in vars(record).items():
            if name not in _STANDARD:
                line[name] = value
        return _ENCODER.encode(line)


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks smki's handler, so configuring again replaces it instead of adding a second one."""


class InterruptFilter(logging.Filter):
    """Drops a record whose exception is an interrupt (Ctrl-C, or SIGTERM turned into one): a library
    cleaning up as the interrupt passes through it (SQLAlchemy's pool closing a connection, at a
    second Ctrl-C) logged it with its traceback, beside the one line the command itself gives
    (``interrupted``), which already says what happened."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[0] if record.exc_info else None
        return not (isinstance(exc, type) and issubclass(exc, KeyboardInterrupt))


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
    handler.setFormatter(TextFormatter() if fmt == "text" else JsonFormatter())
    handler.addFilter(InterruptFilter())  # first: the redacting filter turns the exception into text
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # smki writes its own access log; alembic's "Context impl SQLiteImpl" on every schema check is noise.
    for noisy in ("uvicorn.access", "uvicorn.error", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
