"""``smki dev``: helpers for tests and demonstrations (never needed in production)."""

from __future__ import annotations

from enum import StrEnum
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

class BatchFormat(StrEnum):
    pem = "pem"
    json = "json"
    xml = "xml"


UsageOption = Annotated[Usage, typer.Option("--usage", help="DS (digitalSignature) or KA (keyAgreement).")]


def _write(out: Path, der: bytes, key_out: Path | None, key: ec.EllipticCurvePrivateKey) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509 import load_der_x509_csr

    from smki.services.files import write_whole

    out.parent.mkdir(parents=True, exist_ok=True)
    write_whole(out, load_der_x509_csr(der).public_bytes(serialization.Encoding.PEM))
    if key_out is not None:  # owner-only from the start: never readable by others, even briefly
        write_whole(key_out, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()), private=True)
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
    if common_name is not None and not 1 <= len(common_name) <= 64:  # X.520 ub-common-name
        raise SmkiError("csr.bad-common-name", f"--cn is 1 to 64 characters, not {len(common_name)}")
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    der = make_organisation_csr(parse_eui64(entity_id), party_role, usage, common_name, key)
    _write(out, der, key_out, key)


@make.command("batch")
def batch(
    count: Annotated[int, typer.Option("--count", min=1, max=10_000_000, help="How many CSRs.")],
    out: Annotated[Path, typer.Option("--out", help="The file to write.")],
    start: Annotated[str, typer.Option("--start", help="First Device ID.")] = "00DB000000000000",
    format: Annotated[BatchFormat, typer.Option(
        "--format", help="pem: a multi-PEM file (smki issue/request batch); json: the body of "
        "POST /api/v1/device-batches; xml: a DCC SubmitCSRBatch.")] = BatchFormat.pem,
    home: HomeOption = DEFAULT_HOME_PATH,
) -> None:
    """COUNT Device CSRs (DS and KA for consecutive Device IDs) as a multi-PEM file or a request body."""
    from smki.ca.devcsr import device_csr_stream, write_device_csrs
    from smki.services.files import replaced_on_success

    first = int.from_bytes(parse_eui64(start), "big")
    last = first + (count - 1) // 2  # DS and KA for each Device ID
    if last > 0xFFFFFFFFFFFFFFFF:
        raise SmkiError("dev.bad-start", f"{count} CSRs from {start} need Device IDs past FFFFFFFFFFFFFFFF; "
                        "start lower")
    if format is not BatchFormat.pem and count > 50_000:
        raise SmkiError("batch.too-large", "a JSON or XML batch holds at most 50,000 CSRs")
    out.parent.mkdir(parents=True, exist_ok=True)
    with replaced_on_success(out) as partial:  # Ctrl-C part-way leaves no half batch to be issued
        if format is BatchFormat.pem:
            write_device_csrs(partial, count, first)
        else:
            # a fresh key per CSR, as real Devices make: smki certifies a key once (csr.duplicate)
            ders = [der for _device, _usage, der in device_csr_stream(count, first_device=first)]
            partial.write_bytes(_batch_body(format, out.stem, ders))
    console.print(f"wrote {count} CSRs to {out}")


def _batch_body(format: BatchFormat, reference: str, ders: list[bytes]) -> bytes:
    if format is BatchFormat.json:
        import base64
        import json

        csrs = [{"id": str(i), "csr": base64.b64encode(der).decode()} for i, der in enumerate(ders, 1)]
        return json.dumps({"reference": reference, "csrs": csrs}).encode()
    from smki.interfaces.dcc.csr_messages import DeviceCSR, SubmitCSRBatch, render_submit_csr_batch

    return render_submit_csr_batch(SubmitCSRBatch(reference, tuple(DeviceCSR(str(i), der)
                                                                   for i, der in enumerate(ders, 1))))
