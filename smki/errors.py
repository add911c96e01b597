"""The one error type every layer raises for a refusal a user can act on.

Each error carries a stable, dotted ``code`` (documented, tested, and safe for clients to match on)
and a one-line human ``message``. Interfaces turn it into a CLI line, an HTTP body or an XML status;
nothing below the interfaces formats errors for people.
"""

from __future__ import annotations


class SmkiError(Exception):
    """A refusal with a stable code (e.g. ``csr.bad-signature``) and a one-line message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    def __reduce__(self) -> tuple[type[SmkiError], tuple[str, str]]:
        # Errors cross process boundaries in batch issuance; keep them picklable as (code, message).
        return (type(self), (self.code, self.message))


class NotFound(SmkiError):
    """A named object (certificate, party, batch…) does not exist."""


class ConfigError(SmkiError):
    """The configuration or home directory is missing or inconsistent."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread by the CLI (``smki.interfaces.cli.main``) so a command
    stops as it does on Ctrl-C: its ``finally`` blocks run, partial files are removed and a
    running batch is closed in the audit log (``batch.interrupted``), where the default action
    would end the process with none of that."""
