"""``smki dev``: helpers for tests and demonstrations (never needed in production)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from smki.domain import RemotePartyRole, Usage
from smki.errors import SmkiError
from smki.eui64 import parse_eui64
from smki.interfaces.cli import populate_cmd
from smki.interfaces.cli.common import DEFAULT_HOME_PATH, HomeOption, console

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

app = typer.Typer(help="Development helpers: test CSRs, a populated store.", no_args_is_help=True)
make = typer.Typer(help="Make CSRs (with fresh P-256 keys) for tests and demos.", no_args_is_help=True)
app.add_typer(make, name="make-csr")
app.command("populate")(populate_cmd.populate)

UsageOption = Annotated[Usage, typer.Option("--usage", help="DS (digitalSignature) or KA (keyAgreement).")]


def _write(out: Path, der: bytes, key_out: Path | None, key: ec.EllipticCurvePrivateKey) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509 import load_der_x509_csr

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(load_der_x509_csr(der).public_bytes(serialization.Encoding.PEM))
    if key_out is not None:
        key_out.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
        key_out.chmod(0o600)
    console.print(f"wrote {out}")


@make.command("device")
def device(
    device_id: Annotated[str, typer.Option("--device-id", help="The Device's EUI-64.")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the CSR (PEM).")],
    usage: UsageOption = Usage.DS,
    key_out: Annotated[Path | None, typer.Option("--key-out", help="Also write the private key.")] = None,
    home: HomeOption = DEFAULT_HOME_PATH,
) -> None:
    """A Device CSR: empty subject, hardwareModuleName SAN with the Device ID, one key usage."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from smki.ca.devcsr import make_device_csr

    key = ec.generate_private_key(ec.SECP256R1())
    der = make_device_csr(parse_eui64(device_id), usage, key)
    _write(out, der, key_out, key)


@make.command("org")
def org(
    entity_id: Annotated[str, typer.Option("--entity-id", help="The Party's Entity Identifier (EUI-64).")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the CSR (PEM).")],
    role: Annotated[int, typer.Option("--role", help="Remote Party Role number, e.g. 2 for supplier.")] = 2,
    usage: UsageOption = Usage.DS,
    common_name: Annotated[str | None, typer.Option("--cn", help="The subject's commonName.")] = None,
    key_out: Annotated[Path | None, typer.Option("--key-out", help="Also write the private key.")] = None,
    home: HomeOption = DEFAULT_HOME_PATH,
) -> None:
    """An Organisation CSR: OU = role, x500UniqueIdentifier = Entity Identifier."""
    from smki.ca.devcsr import make_organisation_csr

    try:
        party_role = RemotePartyRole(role)
    except ValueError as exc:
        known = ", ".join(f"{int(r)} ({r.name.lower()})" for r in RemotePartyRole)
        raise SmkiError("role.invalid", f"{role} is not a Remote Party Role (one of: {known})") from exc
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    der = make_organisation_csr(parse_eui64(entity_id), party_role, usage, common_name, key)
    _write(out, der, key_out, key)


@make.command("batch")
def batch(
    count: Annotated[int, typer.Option("--count", min=1, max=10_000_000, help="How many CSRs.")],
    out: Annotated[Path, typer.Option("--out", help="A multi-PEM file to write.")],
    start: Annotated[str, typer.Option("--start", help="First Device ID.")] = "00DB000000000000",
    home: HomeOption = DEFAULT_HOME_PATH,
) -> None:
    """COUNT Device CSRs (DS and KA for consecutive Device IDs) in one multi-PEM file."""
    from smki.ca.devcsr import write_device_csrs

    write_device_csrs(out, count, int.from_bytes(parse_eui64(start), "big"))
    console.print(f"wrote {count} CSRs to {out}")
