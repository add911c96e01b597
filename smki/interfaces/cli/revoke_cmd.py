"""Revocation and status commands: ``smki cert revoke|set-status|expire-due`` and ``smki ca revoke``.

RA staff act as themselves: ``--as STAFF_ID`` (or ``SMKI_STAFF``) names who is acting, and the
service checks that they hold the role the action needs. CA certificates are revoked under dual
control: one RA operator proposes, a different RA approver approves or refuses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal, get_args

import typer

from smki.domain import MAX_ROW_ID, CertStatus
from smki.interfaces.cli.common import (
    DEFAULT_HOME_PATH,
    HomeOption,
    actor,
    console,
    open_for_reading,
    open_for_signing,
)
from smki.interfaces.cli.output import CsvOption, JsonOption, emit_rows
from smki.settings_model import env_name

if TYPE_CHECKING:
    from smki.services.revocation import Published

#: smki.services.revocation.REASON_CODES, by name and by number, for the option's choices without
#: importing the service (a test keeps them equal): anything else is a usage error (exit 2).
ReasonChoice = Literal["unspecified", "keyCompromise", "cACompromise", "affiliationChanged", "superseded",
                       "cessationOfOperation", "privilegeWithdrawn", "0", "1", "2", "3", "4", "5", "9"]
REASON_NAMES = get_args(ReasonChoice)[:7]

StaffOption = Annotated[
    str | None,
    typer.Option("--as", envvar=env_name("staff"), help="Your RA staff id (or set SMKI_STAFF)."),
]
ReasonOption = Annotated[
    ReasonChoice, typer.Option("--reason", case_sensitive=False, help="RFC 5280 reason, by name or number."),
]

ca_revoke_app = typer.Typer(help="Revoke a CA certificate under dual control (onto the Root's ARL).",
                            no_args_is_help=True)


def _published(done: Published) -> None:
    console.print(f"published {done.kind} #{done.number} ({done.entries} entries): {done.path}", highlight=False)


def revoke(
    serial: Annotated[str, typer.Argument(help="Serial number (hex) of an Organisation Certificate.")],
    reason: ReasonOption,
    staff: StaffOption = None,
    home: HomeOption = DEFAULT_HOME_PATH,
) -> None:
    """Revoke an Organisation Certificate (RA operator) and publish the new CRL."""
    from smki.services.revocation import parse_reason, revoke_as_operator

    code = parse_reason(reason)
    opened = open_for_signing(home)
    try:
        done = revoke_as_operator(opened, serial, code, staff_id=staff)
    finally:
        opened.close()
    console.print(f"revoked {serial}", highlight=False)
    _published(done)


def set_status_command(
    serial: Annotated[str, typer.Argument(help="Serial number (hex).")],
    status: Annotated[CertStatus, typer.Argument(help="P, I, N or E (R only through 'revoke').")],
    staff: StaffOption = None,
    home: HomeOption = DEFAULT_HOME_PATH,
) -> None:
    """Set a Device or Organisation Certificate's Repository status (RA operator)."""
    from smki.services.revocation import set_status

    opened = open_for_reading(home)
    try:
        previous = set_status(opened, serial, status, staff_id=staff)
    finally:
        opened.close()
    console.print(f"{serial}: {previous.value} -> {status.value}", highlight=False)


def expire_due_command(home: HomeOption = DEFAULT_HOME_PATH) -> None:
    """Mark Organisation Certificates past their notAfter as expired (E)."""
    from smki.services.revocation import expire_due

    opened = open_for_reading(home)
    try:
        serials = expire_due(opened, actor=actor())
    finally:
        opened.close()
    console.print(f"{len(serials)} certificate(s) expired", highlight=False)


@ca_revoke_app.command("propose")
def propose(
    serial: Annotated[str, typer.Argument(help="Serial (hex) of the Organisation CA or Device CA certificate.")],
    reason: ReasonOption,
    staff: StaffOption = None,
    home: HomeOption = DEFAULT_HOME_PATH,
) -> None:
    """Propose revoking a CA certificate (RA operator); a different RA approver decides."""
    from smki.services.revocation import parse_reason, propose_ca_revocation

    code = parse_reason(reason)
    opened = open_for_reading(home)
    try:
        item = propose_ca_revocation(opened, serial, code, staff_id=staff)
    finally:
        opened.close()
    console.print(f"proposal {item} awaits an RA approver: smki ca revoke approve {item} --as APPROVER",
                  highlight=False)


@ca_revoke_app.command("approve")
def approve(
    item: Annotated[int, typer.Argument(min=1, max=MAX_ROW_ID, help="The proposal number.")],
    staff: StaffOption = None,
    home: HomeOption = DEFAULT_HOME_PATH,
) -> None:
    """Approve a CA revocation (RA approver, not the proposer): revoke and publish the ARL."""
    from smki.services.revocation import decide_ca_revocation

    opened = open_for_signing(home)
    try:
        done = decide_ca_revocation(opened, item, staff_id=staff, approve=True)
    finally:
        opened.close()
    if done is not None:
        _published(done)


@ca_revoke_app.command("refuse")
def refuse(
    item: Annotated[int, typer.Argument(min=1, max=MAX_ROW_ID, help="The proposal number.")],
    staff: StaffOption = None,
    home: HomeOption = DEFAULT_HOME_PATH,
    reason: Annotated[str | None, typer.Option("--reason", help="Why (recorded in the audit log).")] = None,
) -> None:
    """Refuse a CA revocation (RA approver, not the proposer)."""
    from smki.services.revocation import decide_ca_revocation

    opened = open_for_reading(home)
    try:
        decide_ca_revocation(opened, item, staff_id=staff, approve=False, reason=reason)
    finally:
        opened.close()
    console.print(f"proposal {item} refused", highlight=False)


@ca_revoke_app.command("list")
def list_proposals(
    home: HomeOption = DEFAULT_HOME_PATH,
    all_items: Annotated[bool, typer.Option("--all", help="Decided proposals too.")] = False,
    as_json: JsonOption = False,
    as_csv: CsvOption = False,
) -> None:
    """CA revocation proposals (pending ones unless --all)."""
    from smki.services.revocation import CA_REVOKE_ACTION

    opened = open_for_reading(home)
    try:
        items = opened.store.registry.dual_control_items(None if all_items else "pending")
    finally:
        opened.close()
    emit_rows([{"item": i.id, "certificate": i.subject, "reason": i.payload.get("reason"), "status": i.status,
                "proposed_by": i.proposed_by, "decided_by": i.decided_by}
               for i in items if i.action == CA_REVOKE_ACTION],
              as_json=as_json, as_csv=as_csv, title=None if as_json or as_csv else "CA revocation proposals",
              columns=("item", "certificate", "reason", "status", "proposed_by", "decided_by"))
