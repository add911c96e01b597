"""Logs (issue 12, point 1): formats, levels, and no secret in any log line.

The property test hands the redacting filter messages and extra fields that embed a registered
secret (a passphrase, PIN or PKCS#12 password), a PEM private key or a ``token=`` pair anywhere,
and checks the rendered line never holds them, in both formats. ``tests/api/test_operations.py``
checks the same on a live server's stderr.
"""

from __future__ import annotations

import io
import json
import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smki.errors import ConfigError
from smki.observability.logs import REDACTED, configure_logging, register_secret, safe_path

PASSPHRASE = "correct horse battery staple"
PIN = "5501-9921"
P12 = "p12-Pa55word!"
KEY = ("-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n"
       "-----END PRIVATE KEY-----")
TOKEN = "9f2c1e0b7a6d5c4b3a29181706f5e4d3"


def _capture(fmt: str) -> io.StringIO:
    stream = io.StringIO()
    configure_logging("debug", fmt, stream)
    return stream


@pytest.fixture(autouse=True)
def _restore_logging() -> object:
    yield
    configure_logging("warning", "json")


text_around = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30)


@settings(max_examples=150, deadline=None)
@given(before=text_around, after=text_around, secret=st.sampled_from([PASSPHRASE, PIN, P12, KEY]),
       fmt=st.sampled_from(["json", "text"]), where=st.sampled_from(["message", "arg", "extra", "exception"]))
def test_no_log_line_holds_a_secret(before: str, after: str, secret: str, fmt: str, where: str) -> None:
    for value in (PASSPHRASE, PIN, P12):
        register_secret(value)
    stream = _capture(fmt)
    log = logging.getLogger("smki.test")
    text = before + secret + after
    if where == "message":
        log.info(text)
    elif where == "arg":
        log.warning("value %s here", text)
    elif where == "extra":
        log.info("with extra", extra={"detail": text, "pin": "1234", "token": TOKEN})
    else:
        try:
            raise ValueError(text)
        except ValueError:
            log.exception("failed")
    out = stream.getvalue()
    assert secret not in out
    assert TOKEN not in out
    assert "PRIVATE KEY-----\nMIG" not in out


def test_keyed_secrets_and_query_strings_are_redacted() -> None:
    stream = _capture("json")
    logging.getLogger("smki.test").info(f"login password={TOKEN} pin: 9999 token={TOKEN}")
    line = json.loads(stream.getvalue())
    assert line["message"] == f"login password={REDACTED} pin: {REDACTED} token={REDACTED}"
    assert safe_path("/x", b"apikey=abc&device_id=00-DB&csrf=zz") == \
        f"/x?apikey={REDACTED}&device_id=00-DB&csrf={REDACTED}"
    assert safe_path("/x") == "/x"


def test_json_lines_carry_time_level_logger_and_fields() -> None:
    stream = _capture("json")
    logging.getLogger("smki.access").info("GET / 200", extra={"status": 200, "duration_ms": 1.5})
    line = json.loads(stream.getvalue())
    assert line["level"] == "info" and line["logger"] == "smki.access" and line["message"] == "GET / 200"
    assert line["status"] == 200 and line["duration_ms"] == 1.5 and line["time"].endswith("Z")


def test_text_format_and_levels() -> None:
    stream = _capture("text")
    configure_logging("warning", "text", stream)
    log = logging.getLogger("smki.test")
    log.info("hidden")
    log.warning("shown", extra={"request_id": "abc"})
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].endswith(" WARNING smki.test shown request_id=abc")


def test_bad_level_or_format_is_refused() -> None:
    with pytest.raises(ConfigError, match="log-level"):
        configure_logging("loud", "json")
    with pytest.raises(ConfigError, match="log-format"):
        configure_logging("info", "xml")
