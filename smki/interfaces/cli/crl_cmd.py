"""``smki crl``: publish, show and export the Organisation CA's CRL and the Root's ARL."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from smki.domain import MAX_ROW_ID
from smki.interfaces.cli.common import (
    DEFAULT_HOME_PATH,
    HomeOption,
    actor,
    console,
    open_for_reading,
    open_for_signing,
    write_output,
)
from smki.interfaces.cli.output import JsonOption, emit_record, fields_table

app = typer.Typer(help="Certificate and Authority Revocation Lists.", no_args_is_help=True)


class Kind(StrEnum):
    CRL = "CRL"
    ARL = "ARL"
    all = "all"


class ListKind(StrEnum):
    CRL = "CRL"
    ARL = "ARL"


class Format(StrEnum):
    der = "der"
    pem = "pem"


@app.command("publish")
def publish_command(
    home: HomeOption = DEFAULT_HOME_PATH,
    kind: Annotated[Kind, typer.Option("--kind", case_sensitive=False, help="Which list to publish.")] = Kind.all,
) -> None:
    """Expire Organisation Certificates past notAfter, then sign and publish the CRL and/or ARL."""
    from smki.services.revocation import ARL, CRL, expire_due, publish

    opened = open_for_signing(home)
    try:
        who = actor()
        expired = expire_due(opened, actor=who)
        if expired:
            console.print(f"{len(expired)} certificate(s) expired", highlight=False)
        kinds = (CRL, ARL) if kind is Kind.all else (kind.value,)
        for which in kinds:
            done = publish(opened, which, actor=who)
            console.print(f"published {done.kind} #{done.number} ({done.entries} entries): {done.path}",
                          highlight=False)
    finally:
        opened.close()


@app.command("show")
def show(
    home: HomeOption = DEFAULT_HOME_PATH,
    kind: Annotated[ListKind, typer.Option("--kind", case_sensitive=False, help="Which list.")] = ListKind.CRL,
    number: Annotated[int | None, typer.Option("--number", min=1, max=MAX_ROW_ID,
                                                help="CRL number (default: the newest).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Show a published CRL or ARL and the numbers still retrievable."""
    from cryptography import x509

    from smki.services.revocation import list_record

    opened = open_for_reading(home)
    try:
        record = list_record(opened, kind.value, number)
        numbers = opened.store.revocation_list_numbers(kind.value)
    finally:
        opened.close()
    crl = x509.load_der_x509_crl(record.der)
    facts: dict[str, object] = {
        "kind": record.kind, "number": record.number, "issuer": crl.issuer.rfc4514_string(),
        "this_update": record.this_update, "next_update": record.next_update, "entries": record.entries,
        "size_bytes": len(record.der), "published_numbers": list(numbers),
    }
    if emit_record(facts, as_json=as_json):
        return
    shown = numbers if len(numbers) <= 20 else [*numbers[:5], "…", *numbers[-5:]]
    fields_table({**facts, "size_bytes": f"{len(record.der):,}", "published_numbers": [str(n) for n in shown]})


@app.command("export")
def export(
    out: Annotated[Path | None, typer.Option("--out", help="File to write (default: standard output).")] = None,
    home: HomeOption = DEFAULT_HOME_PATH,
    kind: Annotated[ListKind, typer.Option("--kind", case_sensitive=False, help="Which list.")] = ListKind.CRL,
    number: Annotated[int | None, typer.Option("--number", min=1, max=MAX_ROW_ID,
                                                help="CRL number (default: the newest).")] = None,
    format: Annotated[Format, typer.Option("--format", help="DER or PEM.")] = Format.der,
) -> None:
    """Write a published CRL or ARL, by number, as DER or PEM."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    from smki.services.revocation import list_record

    opened = open_for_reading(home)
    try:
        record = list_record(opened, kind.value, number)
    finally:
        opened.close()
    data = record.der
    if format is Format.pem:
        data = x509.load_der_x509_crl(record.der).public_bytes(Encoding.PEM)
    write_output(data, out)
    if out is not None:
        console.print(f"wrote {record.kind} #{record.number} to {out}", highlight=False)
