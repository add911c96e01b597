"""``smki serve``: the Gateway and SPOTI listeners (mutual TLS), one configuration.

Settings come from ``[api]`` in ``smki.toml`` (see :mod:`smki.interfaces.api.settings`); flags
override them. The key secret (needed to issue) comes from the environment or a prompt.

Registration: ``COMMANDS.add("serve", …serve_cmd:serve, …)`` in ``smki.interfaces.cli.main``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from smki.config import load_settings
from smki.interfaces.cli.common import DEFAULT_HOME_PATH, HomeOption, read_secret

if TYPE_CHECKING:
    from smki.interfaces.api.settings import ApiSettings


def serve(
    gateway: Annotated[str | None, typer.Option("--gateway", help="Gateway listener host:port.")] = None,
    spoti: Annotated[str | None, typer.Option("--spoti", help="SPOTI listener host:port.")] = None,
    no_spoti: Annotated[bool, typer.Option("--no-spoti", help="Run without the SPOTI listener.")] = False,
    workers: Annotated[int | None, typer.Option("--workers", min=1, help="Server processes.")] = None,
    batch_workers: Annotated[int | None, typer.Option("--batch-workers", min=0,
                                                      help="Signing processes per batch (0: in-process).")] = None,
    admin: Annotated[str | None, typer.Option("--admin", help="Admin listener host:port (/healthz, /readyz, "
                                              "/metrics; plain HTTP, keep it on loopback).")] = None,
    log_level: Annotated[str | None, typer.Option("--log-level", help="debug, info, warning, error.")] = None,
    log_format: Annotated[str | None, typer.Option("--log-format", help="json, text or auto.")] = None,
    home: HomeOption = DEFAULT_HOME_PATH,
) -> None:
    """Serve the JSON API, the DCC XML services and the Portal on the Gateway and SPOTI listeners."""
    from smki.interfaces.api.server import serve as run_server
    from smki.interfaces.api.settings import Listen, api_settings
    from smki.observability.logs import configure_logging, register_secret

    settings = load_settings(home)
    configure_logging(log_level or os.environ.get("SMKI_LOG_LEVEL") or settings.log_level,
                      log_format or os.environ.get("SMKI_LOG_FORMAT") or settings.log_format)
    api = api_settings(settings)
    register_secret(api.repository_apikey)
    overrides: dict[str, object] = {
        "gateway": None if gateway is None else Listen.parse(gateway, "--gateway"),
        "workers": workers,
        "batch_workers": batch_workers,
        "admin": None if admin is None else Listen.parse(admin, "--admin"),
    }
    if spoti is not None:
        overrides["spoti"] = Listen.parse(spoti, "--spoti")
    api = api.with_overrides(**overrides)
    if no_spoti:
        from dataclasses import replace

        api = replace(api, spoti=None)
    secret = read_secret(settings)
    register_secret(secret)
    on_started = None
    if api.admin is not None:
        on_started = _admin_starter(home, secret, api)
    run_server(home, secret, api, on_started=on_started)


def _admin_starter(home: Path, secret: bytes, api: ApiSettings) -> Callable[[], None]:
    """Switch the metrics to multiprocess mode now (before any server process counts), start later."""
    from smki.interfaces.admin.server import AdminListener
    from smki.observability.metrics import enable_multiprocess

    assert api.admin is not None
    enable_multiprocess(home / "run" / "metrics")
    listener = AdminListener(api.admin, home, secret, max_beat_age=max(30.0, 20 * api.batch_poll),
                             runners=api.workers)

    def start() -> None:
        listener.start()
        print(f"smki: admin http://{listener.address}", flush=True)

    return start


def main() -> None:
    """``python -m smki.interfaces.cli.serve_cmd``: the same command, with the CLI's error boundary."""
    from smki.errors import SmkiError
    from smki.interfaces.cli.common import err_console

    try:
        typer.run(serve)
    except SmkiError as exc:
        err_console.print(f"[bold red]error:[/] {exc.code}: {exc.message}", highlight=False)
        raise SystemExit(1) from exc


if __name__ == "__main__":
    main()
