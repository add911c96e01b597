"""The ``smki`` command: CA-operator and RA-staff commands, one Typer sub-app per area.

``run`` is the entry point. It is the CLI's single error boundary: a ``SmkiError`` becomes one
line on stderr (``error: <code>: <message>``) and exit status 1; nothing becomes a traceback
unless ``SMKI_DEBUG`` is set.
"""

from __future__ import annotations

import os
import sys

import typer

from smki.errors import SmkiError
from smki.interfaces.cli import (
    apply_cmd,
    aro_cmd,
    audit_cmd,
    backup_cmd,
    bench_cmd,
    ca_cmd,
    cert_cmd,
    config_cmd,
    credential_cmd,
    crl_cmd,
    db_cmd,
    dev_cmd,
    device_cmd,
    issue_cmd,
    party_cmd,
    populate_cmd,
    portal_cmd,
    ra_batches_cmd,
    ra_cmd,
    repo_cmd,
    request_cmd,
    revoke_cmd,
    serve_cmd,
    staff_cmd,
)
from smki.interfaces.cli.common import err_console

app = typer.Typer(
    name="smki",
    help="GB Smart Metering Key Infrastructure: Registration Authority, CA and Repository.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(ca_cmd.app, name="ca")
app.add_typer(issue_cmd.app, name="issue")
app.add_typer(cert_cmd.app, name="cert")
app.add_typer(repo_cmd.app, name="repo")
app.add_typer(audit_cmd.app, name="audit")
app.add_typer(dev_cmd.app, name="dev")
app.add_typer(bench_cmd.app, name="bench")
# The Registration Authority (issue 3): the register, applications and decisions, the subscriber path.
app.add_typer(staff_cmd.app, name="staff")
app.add_typer(party_cmd.app, name="party")
app.add_typer(aro_cmd.app, name="aro")
app.add_typer(apply_cmd.app, name="apply")
app.add_typer(ra_cmd.app, name="ra")
app.add_typer(request_cmd.app, name="request")
app.add_typer(device_cmd.app, name="device")
ra_cmd.app.add_typer(ra_batches_cmd.app, name="batches")
# Revocation, CRL/ARL, status lifecycle and the data generator (issue 5).
app.add_typer(crl_cmd.app, name="crl")
cert_cmd.app.command("revoke")(revoke_cmd.revoke)
cert_cmd.app.command("set-status")(revoke_cmd.set_status_command)
cert_cmd.app.command("expire-due")(revoke_cmd.expire_due_command)
ca_cmd.app.add_typer(revoke_cmd.ca_revoke_app, name="revoke")
dev_cmd.app.command("populate")(populate_cmd.populate)
# The HTTP interfaces (issue 4): SMKI credentials and the Gateway/SPOTI listeners.
credential_cmd.register(app, aro_cmd.app)
app.command("serve")(serve_cmd.serve)
app.add_typer(portal_cmd.app, name="portal")
# Operating smki (issue 12): schema, version.
app.add_typer(db_cmd.app, name="db")
app.add_typer(config_cmd.app, name="config")
app.add_typer(backup_cmd.app, name="backup")


def _version(value: bool) -> None:
    if value:
        from smki import __version__
        from smki.services.schema import code_schema_revision

        typer.echo(f"smki {__version__} (schema {code_schema_revision()})")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and the database schema revision it needs, and exit."),
) -> None:
    """GB Smart Metering Key Infrastructure: Registration Authority, CA and Repository."""


def run() -> None:
    from smki.observability.logs import configure_logging

    try:
        # A one-shot command logs warnings and errors only (its results are its output); ``smki
        # serve`` reconfigures from the home's log-level / log-format.
        configure_logging(os.environ.get("SMKI_LOG_LEVEL", "warning"), os.environ.get("SMKI_LOG_FORMAT", "auto"))
        app()
    except SmkiError as exc:
        err_console.print(f"[bold red]error:[/] {exc.code}: {exc.message}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except Exception as exc:
        if os.environ.get("SMKI_DEBUG"):
            raise
        err_console.print(
            f"[bold red]error:[/] internal: {type(exc).__name__}: {exc} (set SMKI_DEBUG=1 for details)",
            highlight=False, soft_wrap=True,
        )
        sys.exit(2)


if __name__ == "__main__":
    run()
