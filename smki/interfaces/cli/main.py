"""The ``smki`` command: CA-operator and RA-staff commands, one Typer sub-app per area.

The command tree is declared here, one line per group; each group's module is imported only when
that group runs (``smki.interfaces.cli.lazy``), so ``smki --help`` and ``smki <group> --help``
answer without importing cryptography, SQLAlchemy or FastAPI.

``run`` is the entry point and the CLI's single error boundary. Exit statuses (README "Exit
statuses"): 0 done; 1 a ``SmkiError`` (one line on stderr, ``error: <code>: <message>``: a refusal,
bad input, a missing home); 2 a usage error (one line, ``error: usage: …``); 3 ``ra propose``
recorded a refusing proposal; 4 an internal error (one line; the traceback only with
``SMKI_DEBUG=1``); 130 interrupted (Ctrl-C); 143 terminated (SIGTERM, which ``run`` turns into
an exception, ``smki.errors.Terminated``, so a command's clean-up runs as it does on Ctrl-C). A
file the operator named that cannot be read or written (a missing directory, a directory where a
file was expected, a name too long) is an input error (status 1, ``error: io: …``), not an
internal one.
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType

import typer
from typer import _click
from typer.exceptions import Abort

from smki.errors import SmkiError, Terminated
from smki.interfaces.cli.lazy import LazyCommands

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_PROPOSAL_REFUSED = 3
EXIT_INTERNAL = 4
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143

COMMANDS = LazyCommands()


def _version(value: bool) -> None:
    if value:
        from smki import __version__
        from smki.services.schema import code_schema_revision

        typer.echo(f"smki {__version__} (schema {code_schema_revision()})")
        raise typer.Exit()


def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and the database schema revision it needs, and exit."),
) -> None:
    """GB Smart Metering Key Infrastructure: Registration Authority, CA and Repository."""


app = typer.Typer(
    name="smki",
    help="GB Smart Metering Key Infrastructure: Registration Authority, CA and Repository.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
    rich_markup_mode=None,  # plain help (see lazy._plain_help)
    cls=COMMANDS.group_class,
    callback=_root,
)
_cli = "smki.interfaces.cli."
# The CA operator: the key ceremony, issuance, the Repository, the audit log (issue 1, 2).
COMMANDS.add("ca", _cli + "ca_cmd:app", "Create and inspect the CA hierarchy (Root, Organisation CA, Device CA).")
COMMANDS.add("issue", _cli + "issue_cmd:app", "Issue certificates from PKCS#10 CSRs (CA operator).")
COMMANDS.add("cert", _cli + "cert_cmd:app", "Show, search, export, revoke and set the status of certificates.")
COMMANDS.add("repo", _cli + "repo_cmd:app", "The Repository: extracts of every certificate and status.")
COMMANDS.add("audit", _cli + "audit_cmd:app", "The audit log: verify the hash chain, show its end.")
COMMANDS.add("dev", _cli + "dev_cmd:app", "Development helpers: test CSRs, a populated store.")
COMMANDS.add("bench", _cli + "bench_cmd:app", "Performance benchmarks.")
# The Registration Authority (issue 3): the register, applications and decisions, the subscriber path.
COMMANDS.add("staff", _cli + "staff_cmd:app", "RA staff: operators, approvers and auditors.")
COMMANDS.add("party", _cli + "party_cmd:app", "SEC Parties in the RA register.")
COMMANDS.add("aro", _cli + "aro_cmd:app", "Authorised Responsible Officers (AROs) and their credentials.")
COMMANDS.add("apply", _cli + "apply_cmd:app", "Applications for Authorised Subscriber status.")
COMMANDS.add("ra", _cli + "ra_cmd:app", "RA decisions: evidence, propose, approve, refuse, explain, queue.")
COMMANDS.add("request", _cli + "request_cmd:app", "Request certificates as a Party's ARO, under the RA rules.")
# The Device side of the SEC (issue 13): the device register (batches: 'smki ra batches').
COMMANDS.add("device", _cli + "device_cmd:app", "The device register: a stand-in for the Smart Metering Inventory.")
# Revocation, CRL/ARL, status lifecycle (issue 5).
COMMANDS.add("crl", _cli + "crl_cmd:app", "Certificate and Authority Revocation Lists.")
# The HTTP interfaces (issue 4): SMKI credentials and the Gateway/SPOTI listeners.
COMMANDS.add("credential", _cli + "credential_cmd:app", "SMKI credentials: TLS client certificates.")
COMMANDS.add("system", _cli + "credential_cmd:system_app", "Authorised Systems that use the web services.")
COMMANDS.add("serve", _cli + "serve_cmd:serve", "Serve the JSON API, the DCC XML services and the Portal.")
COMMANDS.add("portal", _cli + "portal_cmd:app", "The Portal's shared settings.")
# Operating smki (issue 12): schema, configuration, backups, version.
COMMANDS.add("db", _cli + "db_cmd:app", "The database schema: status and upgrade (Alembic).")
COMMANDS.add("config", _cli + "config_cmd:app", "The configuration: effective values and validation.")
COMMANDS.add("backup", _cli + "backup_cmd:app", "Backups: database, certificates, CRLs and keys.")


def _usage_line(exc: _click.exceptions.UsageError) -> str:
    message = " ".join(exc.format_message().split())
    where = exc.ctx.command_path if exc.ctx is not None else "smki"
    return f"error: usage: {message} (see '{where} --help')"


def _os_error_text(exc: OSError) -> str:
    """``<file>: <reason>`` of a failed file operation, on one line (a long name shortened)."""
    name = exc.filename if exc.filename is not None else ""
    text = str(name)
    if len(text) > 120:
        text = text[:60] + "…" + text[-40:]
    reason = exc.strerror or type(exc).__name__
    return f"{text}: {reason}" if text else reason


def _explain_rule(exc: SmkiError) -> None:
    """Under a refusal by one RA rule (``ra.dual-control``, ``ra.staff-role``, ``staff.role-required``…),
    the rule, its reason and the SEC reference it rests on, as ``ra propose`` shows a refused
    decision's rules: the error line alone named no clause."""
    from smki.ra.engine import RuleRefusal

    if isinstance(exc, RuleRefusal):
        from smki.interfaces.cli.common import say_failed_rules

        say_failed_rules((exc.result,))


def _fail(line: str, code: int) -> None:
    from smki.interfaces.cli.common import err_console

    err_console.print(line, highlight=False, soft_wrap=True, markup=False)
    sys.exit(code)


#: Set when SIGTERM arrives: Typer turns any KeyboardInterrupt (``Terminated`` is one) into Exit(130).
_terminated: list[int] = []


def _terminate(signum: int, frame: FrameType | None) -> None:
    _terminated.append(signum)
    raise Terminated


def _stopped() -> None:
    from smki.interfaces.cli.common import stop_notes

    note = f": {stop_notes[-1]}" if stop_notes else ""
    if _terminated:
        _fail(f"terminated{note}", EXIT_TERMINATED)
    _fail(f"interrupted{note}", EXIT_INTERRUPTED)


def run() -> None:
    """Run the command in ``sys.argv`` with SIGTERM raising ``Terminated`` (then restored)."""
    from smki.interfaces.cli.common import stop_notes

    _terminated.clear()
    stop_notes.clear()
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        _run()
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run() -> None:
    from smki.observability.logs import configure_logging
    from smki.settings_model import env_name, environment

    try:
        # A one-shot command logs warnings and errors only (its results are its output), unless
        # SMKI_LOG_LEVEL says otherwise; ``smki serve`` reconfigures from the home's settings.
        level = environment("log-level") if os.environ.get(env_name("log-level")) else "warning"
        configure_logging(level, environment("log-format"))
        code = app(standalone_mode=False)
    except SmkiError as exc:
        from smki.interfaces.cli.common import err_console

        err_console.print(f"[bold red]error:[/] {exc.code}: {exc.message}", highlight=False, soft_wrap=True)
        _explain_rule(exc)
        sys.exit(EXIT_ERROR)
    except _click.exceptions.NoArgsIsHelpError as exc:
        if exc.ctx is not None:
            _click.echo(exc.ctx.get_help())
        sys.exit(EXIT_USAGE)
    except _click.exceptions.UsageError as exc:
        _fail(_usage_line(exc), EXIT_USAGE)
    except _click.exceptions.ClickException as exc:
        _fail(f"error: input: {' '.join(exc.format_message().split())}", EXIT_ERROR)
    except (KeyboardInterrupt, Abort, EOFError):
        _stopped()
    except OSError as exc:
        _fail(f"error: io: {_os_error_text(exc)}", EXIT_ERROR)
    except Exception as exc:
        if os.environ.get(env_name("debug"), "").strip().lower() not in ("", "0", "false", "no", "off"):
            raise
        message = " ".join(str(exc).split())  # one line, whatever the exception's text holds
        _fail(f"error: internal: {type(exc).__name__}: {message} (set SMKI_DEBUG=1 for details)", EXIT_INTERNAL)
    if code == EXIT_INTERRUPTED:  # Typer turns Ctrl-C inside a command into Exit(130), silently
        _stopped()
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    run()
