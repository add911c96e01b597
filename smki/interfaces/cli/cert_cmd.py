"""``smki cert``: show, search and export certificates held in the store."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from smki.domain import MAX_ROW_ID, CertKind, CertStatus, Usage
from smki.errors import NotFound, SmkiError
from smki.eui64 import eui64_hex, parse_eui64
from smki.interfaces.cli import revoke_cmd
from smki.interfaces.cli.common import (
    DEFAULT_HOME_PATH,
    HomeOption,
    console,
    open_for_reading,
    write_output,
)
from smki.interfaces.cli.output import CsvOption, JsonOption, check_formats, emit_record, emit_rows, fields_table

if TYPE_CHECKING:
    from cryptography import x509

    from smki.store import CertificateRecord

app = typer.Typer(help="Show, search, export, revoke and set the status of certificates.", no_args_is_help=True)

#: smki.store.MAX_PAGE, repeated so that ``smki cert --help`` needs no SQLAlchemy (a test keeps them equal).
MAX_PAGE = 1_000


class Format(StrEnum):
    pem = "pem"
    der = "der"


def _load_file(path: Path) -> x509.Certificate:
    from cryptography import x509

    data = path.read_bytes()
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise SmkiError("certificate.malformed", f"{path} is not an X.509 certificate") from exc


def _stored(home: Path, serial: str) -> CertificateRecord:
    """The certificate with this serial from the store, or ``certificate.not-found``."""
    from smki.store import normalise_serial

    opened = open_for_reading(home)
    try:
        record = opened.store.certificate_by_serial(normalise_serial(serial))
    finally:
        opened.close()
    if record is None:
        raise NotFound("certificate.not-found", f"no certificate with serial {serial}")
    return record


@app.command("show")
def show(
    which: Annotated[str, typer.Argument(help="A serial number (hex) or a certificate file.")],
    as_json: JsonOption = False,
    home: HomeOption = DEFAULT_HOME_PATH,
) -> None:
    """Show a certificate's SMKI facts and, if it is in the store, its Repository status."""
    from cryptography import x509

    from smki.repository.describe import certificate_facts

    status = "(not in this store)"
    path = Path(which)
    try:
        is_file = path.is_file()
    except OSError:  # a name too long for a file (a pasted serial of thousands of characters): not a file
        is_file = False
    if is_file:
        cert = _load_file(path)
    else:
        record = _stored(home, which)
        cert = x509.load_der_x509_certificate(record.der)
        status = record.status.value
    facts = certificate_facts(cert)
    record_out = {
        "serial": facts.serial, "kind": facts.kind, "usage": facts.usage, "subject": facts.subject,
        "issuer": facts.issuer, "not_before": facts.not_before, "not_after": facts.not_after,
        "device_id": eui64_hex(facts.device_id) if facts.device_id else None,
        "entity_id": eui64_hex(facts.entity_id) if facts.entity_id else None,
        "role": f"{facts.role:02X}" if facts.role is not None else None, "status": status,
    }
    if not emit_record(record_out, as_json=as_json):
        fields_table(record_out)


@app.command("search")
def search(
    home: HomeOption = DEFAULT_HOME_PATH,
    device: Annotated[str | None, typer.Option("--device", help="Device ID (EUI-64).")] = None,
    entity: Annotated[str | None, typer.Option("--entity", help="Entity Identifier (EUI-64).")] = None,
    serial: Annotated[str | None, typer.Option("--serial", help="Serial number (hex).")] = None,
    role: Annotated[int | None, typer.Option("--role", min=0, max=255, help="Remote Party Role (decimal).")] = None,
    usage: Annotated[Usage | None, typer.Option("--usage", help="DS or KA.")] = None,
    status: Annotated[CertStatus | None, typer.Option("--status", help="P, I, N, E or R.")] = None,
    kind: Annotated[CertKind | None, typer.Option("--kind", help="The kind of certificate.")] = None,
    issued_from: Annotated[datetime | None, typer.Option("--issued-from", help="Issued at or after (UTC).")] = None,
    issued_before: Annotated[datetime | None, typer.Option("--issued-before", help="Issued before (UTC).")] = None,
    after: Annotated[int, typer.Option("--after", min=0, max=MAX_ROW_ID,
                                       help="Page cursor: the 'next' value of the previous page.")] = 0,
    limit: Annotated[int, typer.Option(min=1, max=MAX_PAGE, help="Certificates per page.")] = 100,
    as_json: JsonOption = False,
    as_csv: CsvOption = False,
) -> None:
    """Search certificates (criteria combine with AND), a page at a time.

    Exit status 1 when nothing matches. With --json the page is an object: the certificates and,
    when there may be more, the 'next' cursor for --after.
    """
    from smki.store import CertificateQuery, normalise_serial

    check_formats(as_json, as_csv)
    if serial is not None:
        opened = open_for_reading(home)
        try:
            found = opened.store.certificate_by_serial(normalise_serial(serial))
        finally:
            opened.close()
        records = [found] if found else []
    else:
        query = CertificateQuery(
            kind=kind, status=status, usage=usage, role=role,
            device_id=parse_eui64(device) if device else None,
            entity_id=parse_eui64(entity) if entity else None,
            issued_from=_utc(issued_from), issued_before=_utc(issued_before), after_id=after, limit=limit,
        )
        opened = open_for_reading(home)
        try:
            records = opened.store.find_certificates(query)
        finally:
            opened.close()
    rows = [{"serial": r.serial, "kind": r.kind, "usage": r.usage,
             "device_id": eui64_hex(r.device_id) if r.device_id else None,
             "entity_id": eui64_hex(r.entity_id) if r.entity_id else None,
             "role": f"{r.role:02X}" if r.role is not None else None, "status": r.status,
             "not_before": r.not_before, "not_after": r.not_after} for r in records]
    more = records[-1].id if len(records) == limit and serial is None else None
    if as_json:
        emit_record({"certificates": rows, "next": more}, as_json=True)
    else:
        table_rows = [{**row, "device/entity": row["device_id"] or row["entity_id"]} for row in rows]
        emit_rows(table_rows, as_csv=as_csv, title=None if as_csv else f"{len(records)} certificate(s)",
                  columns=("serial", "kind", "usage", "device/entity", "role", "status", "not_before"))
        if more is not None and not as_csv:
            console.print(f"more: --after {more}")
    if not records:
        raise typer.Exit(1)


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


@app.command("export")
def export(
    serial: Annotated[str, typer.Argument(help="Serial number (hex).")],
    home: HomeOption = DEFAULT_HOME_PATH,
    format: Annotated[Format, typer.Option("--format", help="PEM or DER.")] = Format.pem,
    out: Annotated[Path | None, typer.Option("--out", help="File to write (default: standard output).")] = None,
) -> None:
    """Export a certificate as PEM or DER."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    record = _stored(home, serial)
    data = record.der
    if format is Format.pem:
        data = x509.load_der_x509_certificate(record.der).public_bytes(Encoding.PEM)
    write_output(data, out)


# Revocation and the status lifecycle (issue 5).
app.command("revoke")(revoke_cmd.revoke)
app.command("set-status")(revoke_cmd.set_status_command)
app.command("expire-due")(revoke_cmd.expire_due_command)
