"""``smki cert``: show, search and export certificates held in the store."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from rich.table import Table

from smki.domain import CertKind, CertStatus, Usage
from smki.errors import NotFound, SmkiError
from smki.eui64 import eui64_hex, parse_eui64
from smki.interfaces.cli.common import DEFAULT_HOME_PATH, HomeOption, console, open_for_reading, write_output
from smki.repository.describe import certificate_facts
from smki.store import MAX_PAGE, CertificateQuery, CertificateRecord, normalise_serial

app = typer.Typer(help="Show, search and export certificates.", no_args_is_help=True)


class Format(StrEnum):
    pem = "pem"
    der = "der"


def _load_file(path: Path) -> x509.Certificate:
    data = path.read_bytes()
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise SmkiError("certificate.malformed", f"{path} is not an X.509 certificate") from exc


def _stored(home: Path, serial: str) -> CertificateRecord:
    """The certificate with this serial from the store, or ``certificate.not-found``."""
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
    home: HomeOption = DEFAULT_HOME_PATH,
) -> None:
    """Show a certificate's SMKI facts and, if it is in the store, its Repository status."""
    status = "(not in this store)"
    path = Path(which)
    if path.is_file():
        cert = _load_file(path)
    else:
        record = _stored(home, which)
        cert = x509.load_der_x509_certificate(record.der)
        status = record.status.value
    facts = certificate_facts(cert)
    table = Table(show_header=False)
    table.add_row("serial", facts.serial)
    table.add_row("kind", facts.kind.value)
    table.add_row("usage", facts.usage.value if facts.usage else "-")
    table.add_row("subject", facts.subject)
    table.add_row("issuer", facts.issuer)
    table.add_row("not before", facts.not_before.isoformat())
    table.add_row("not after", facts.not_after.isoformat())
    table.add_row("device id", eui64_hex(facts.device_id) if facts.device_id else "-")
    table.add_row("entity id", eui64_hex(facts.entity_id) if facts.entity_id else "-")
    table.add_row("role", f"{facts.role:02X}" if facts.role is not None else "-")
    table.add_row("status", status)
    console.print(table)


@app.command("search")
def search(
    home: HomeOption = DEFAULT_HOME_PATH,
    device: Annotated[str | None, typer.Option("--device", help="Device ID (EUI-64).")] = None,
    entity: Annotated[str | None, typer.Option("--entity", help="Entity Identifier (EUI-64).")] = None,
    serial: Annotated[str | None, typer.Option("--serial", help="Serial number (hex).")] = None,
    role: Annotated[int | None, typer.Option("--role", help="Remote Party Role (decimal).")] = None,
    usage: Annotated[Usage | None, typer.Option("--usage", help="DS or KA.")] = None,
    status: Annotated[CertStatus | None, typer.Option("--status", help="P, I, N, E or R.")] = None,
    kind: Annotated[CertKind | None, typer.Option("--kind")] = None,
    issued_from: Annotated[datetime | None, typer.Option("--issued-from", help="Issued at or after (UTC).")] = None,
    issued_before: Annotated[datetime | None, typer.Option("--issued-before", help="Issued before (UTC).")] = None,
    after: Annotated[int, typer.Option("--after", help="Page cursor: the 'next' value of the previous page.")] = 0,
    limit: Annotated[int, typer.Option(min=1, max=MAX_PAGE)] = 100,
) -> None:
    """Search certificates (criteria combine with AND), a page at a time."""
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
    table = Table(title=f"{len(records)} certificate(s)")
    for column in ("serial", "kind", "usage", "device/entity", "role", "status", "not before"):
        table.add_column(column)
    for r in records:
        ident = r.device_id or r.entity_id
        table.add_row(r.serial, r.kind.value, r.usage.value if r.usage else "-",
                      eui64_hex(ident) if ident else "-", f"{r.role:02X}" if r.role is not None else "-",
                      r.status.value, r.not_before.isoformat())
    console.print(table)
    if len(records) == limit and serial is None:
        console.print(f"more: --after {records[-1].id}")
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
    format: Annotated[Format, typer.Option("--format")] = Format.pem,
    out: Annotated[Path | None, typer.Option("--out", help="File to write (default: standard output).")] = None,
) -> None:
    """Export a certificate as PEM or DER."""
    record = _stored(home, serial)
    data = record.der
    if format is Format.pem:
        data = x509.load_der_x509_certificate(record.der).public_bytes(Encoding.PEM)
    write_output(data, out)
