"""``smki serve``: the Gateway and SPOTI listeners (mutual TLS), one configuration.

Settings come from ``[api]`` in ``smki.toml`` (see :mod:`smki.interfaces.api.settings`); flags
override them. The key secret (needed to issue) comes from the environment or a prompt.

Registration: ``COMMANDS.add("serve", …serve_cmd:serve, …)`` in ``smki.interfaces.cli.main``.
"""

from __future__ import annotations

from typing import Annotated

import typer

from smki.config import load_settings
from smki.interfaces.cli.common import DEFAULT_HOME_PATH, HomeOption, read_secret


def serve(
    gateway: Annotated[str | None, typer.Option("--gateway", help="Gateway listener host:port.")] = None,
    spoti: Annotated[str | None, typer.Option("--spoti", help="SPOTI listener host:port.")] = None,
    no_spoti: Annotated[bool, typer.Option("--no-spoti", help="Run without the SPOTI listener.")] = False,
    workers: Annotated[int | None, typer.Option("--workers", min=1, help="Server processes.")] = None,
    batch_workers: Annotated[int | None, typer.Option("--batch-workers", min=0,
                                                      help="Signing processes per batch (0: in-process).")] = None,
    home: HomeOption = DEFAULT_HOME_PATH,
) -> None:
    """Serve the JSON API, the DCC XML services and the Portal on the Gateway and SPOTI listeners."""
    from smki.interfaces.api.server import serve as run_server
    from smki.interfaces.api.settings import Listen, api_settings

    settings = load_settings(home)
    api = api_settings(settings)
    overrides: dict[str, object] = {
        "gateway": None if gateway is None else Listen.parse(gateway, "--gateway"),
        "workers": workers,
        "batch_workers": batch_workers,
    }
    if spoti is not None:
        overrides["spoti"] = Listen.parse(spoti, "--spoti")
    api = api.with_overrides(**overrides)
    if no_spoti:
        from dataclasses import replace

        api = replace(api, spoti=None)
    run_server(home, read_secret(settings), api)


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
