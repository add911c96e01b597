"""``smki portal``: operating the Portal across processes and nodes.

Registration: ``COMMANDS.add("portal", …)`` in ``smki.interfaces.cli.main``.
"""

from __future__ import annotations

import typer

from smki.interfaces.cli.common import DEFAULT_HOME_PATH, HomeOption, actor, console, open_for_reading

app = typer.Typer(help="The Portal's shared settings.", no_args_is_help=True)


@app.command("rotate-form-key")
def rotate_form_key_command(home: HomeOption = DEFAULT_HOME_PATH) -> None:
    """Replace the form-token key every node signs Portal forms with (audited).

    Forms already shown stay valid (the previous key is still accepted); run it twice to expire them.
    """
    from smki.services.shared_secrets import CACHE_SECONDS, rotate_form_key

    opened = open_for_reading(home)
    try:
        at = rotate_form_key(opened, actor=actor())
    finally:
        opened.close()
    console.print(f"form-token key rotated at {at:%Y-%m-%d %H:%M:%S} UTC; every server uses it within "
                  f"{CACHE_SECONDS:g} s", highlight=False)
