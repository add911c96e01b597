"""``smki bench``: the one entry point of the benchmarks in :mod:`smki.bench` (see docs/performance.md).

``issue`` has typed options; the other benchmarks keep their own argument parsers (``smki bench
hsm --help`` shows theirs), so this module only forwards their arguments.
"""

from __future__ import annotations

import importlib
import os
import tempfile
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from smki.interfaces.cli.common import console

app = typer.Typer(help="Performance benchmarks.", no_args_is_help=True)


class Backend(StrEnum):
    """``bench issue --backend``: the CA key in encrypted files, or in a SoftHSM2 token."""

    file = "file"
    pkcs11 = "pkcs11"


@app.command("issue")
def issue(
    count: Annotated[list[int], typer.Option("--count", help="Batch sizes to run (repeatable).")] = [10_000],  # noqa: B006
    database_url: Annotated[str, typer.Option(
        help="PostgreSQL URL, its database dropped and re-created for each run (default: SQLite in a temp home).",
    )] = "",
    workers: Annotated[int | None, typer.Option(help="Worker processes (default: one per core).")] = None,
    workdir: Annotated[Path | None, typer.Option(help="Where CSRs and homes go (default: a temp dir).")] = None,
    backend: Annotated[list[Backend], typer.Option(
        "--backend", case_sensitive=False, help="file and/or pkcs11 (SoftHSM2), repeatable.")]
    = [Backend.file],  # noqa: B006
) -> None:
    """Batch Device issuance end to end (parse, validate, sign, persist, audit) vs openssl's limit."""
    from smki.bench.issue import openssl_limit, prepare_csrs, run_issue_benchmark

    cores = os.cpu_count() or 1
    base = workdir or Path(tempfile.mkdtemp(prefix="smki-bench-"))
    console.print(f"cores: {cores}; work directory: {base}")
    for n in count:  # the CSRs first, so that writing them never overlaps a measurement
        prepare_csrs(n, base)
    # The machine's speed drifts (other jobs): each run is set against the openssl limit measured
    # just before and just after it (their mean), not against one figure from the start.
    sign, verify, limit = openssl_limit(cores)
    console.print(f"openssl speed ecdsap256 -multi {cores}: {sign:,.0f} sign/s, {verify:,.0f} verify/s "
                  f"→ limit {limit:,.0f} certs/s (one verify + one sign each)")
    table = Table(title="Batch Device issuance (store: " + (database_url or "SQLite") + ")")
    columns = ["backend", "CSRs", "seconds", "certs/s", "limit", "% of limit", "vs file", "vs file at limit",
               "parent peak MiB", "worker peak MiB"]
    if database_url:  # the new tables' autovacuum passes share the cores: a run with some is slower
        columns.append("autovacuum")
    for column in columns:
        table.add_column(column, justify="right")
    for n in count:
        file_rate = file_share = None
        for name in backend:  # same batch, same run: the ratio is what to compare on a noisy machine
            before = limit
            run = run_issue_benchmark(n, base, database_url, workers, name)
            _, _, limit = openssl_limit(cores)
            around = (before + limit) / 2
            share = run.certs_per_second / around
            if name == "file":
                file_rate, file_share = run.certs_per_second, share
            ratio = f"{run.certs_per_second / file_rate:.2f}" if file_rate and name != "file" else "-"
            # The same ratio with each run first set against its own openssl limit: when the machine
            # slows down between the two runs, this one does not move with it.
            at_limit = f"{share / file_share:.2f}" if file_share and name != "file" else "-"
            table.add_row(name, f"{n:,}", f"{run.seconds:.2f}", f"{run.certs_per_second:,.0f}", f"{around:,.0f}",
                          f"{100 * share:.0f}%", ratio, at_limit, f"{run.parent_peak_mib:.0f}",
                          f"{run.worker_peak_mib:.0f}", *([str(run.autovacuums)] if database_url else []))
    Console(width=max(console.width, 160)).print(table)  # whole figures even when not on a terminal


#: ``smki bench NAME`` → the module of :mod:`smki.bench` whose ``main(argv)`` runs it.
FORWARDED = {
    "http": ("http", "SubmitCSRBatch over mutual TLS against a live smki serve, vs openssl's limit."),
    "codec": ("dcc_codec", "The DCC batch XML codecs (SubmitCSRBatch / CSRBatchResult) at 50,000 CSRs."),
    "repository": ("repository_scale", "Repository look-ups, CRL and extract as the store grows."),
    "hsm": ("hsm_sign", "Signatures per second: the file key backend beside PKCS#11 (SoftHSM2)."),
    "crl": ("crl", "CRL generation time for N revoked entries."),
    "device-factory": ("device_factory", "Device Certificate build + sign rate on one core."),
    "batch-cpu": ("batch_cpu", "Where a batch's CPU goes: the single writer vs the signing workers."),
    "batch-growth": ("batch_growth", "Batch issuance as the store grows: batch after batch into one store."),
    "cluster": ("cluster", "One node direct vs two nodes behind HAProxy on one PostgreSQL, in one run."),
    "store-size": ("store_size", "Single-CSR issuance (Ad Hoc, JSON) and results-page latency as the store grows."),
    "devices": ("device_register", "Device register bulk import / update of N rows and request-time look-ups."),
    "cli": ("cli", "How long the smki command takes to answer: --help, a group's help, simple commands."),
    "access-log": ("access_log", "Per-request cost of the access log and request metrics (ASGI, with vs without)."),
    "service-phases": ("service_phases", "The Gateway batch service's own CPU per CSR, phase by phase, without HTTP."),
    "sql-forms": ("sql_forms", "A single CSR's store statements, plain against the batch's packed forms (PostgreSQL)."),
    "pg-indexes": ("pg_indexes", "What each index of certificates costs a Device row's insert (PostgreSQL)."),
}


def _forwarder(name: str, module: str, summary: str) -> Any:
    def command(ctx: typer.Context) -> None:
        importlib.import_module(f"smki.bench.{module}").main(list(ctx.args))

    command.__doc__ = f"{summary} Its options: smki bench {name} --help."
    return command


for _name, (_module, _summary) in FORWARDED.items():
    app.command(
        _name,
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
        add_help_option=False,
    )(_forwarder(_name, _module, _summary))
