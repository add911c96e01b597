"""Sub-commands imported only when they are run, so ``smki --help`` answers at once.

The whole command tree is declared in ``smki.interfaces.cli.main``, one line per group::

    COMMANDS.add("party", "smki.interfaces.cli.party_cmd:app", "SEC Parties in the RA register.")

A group's module is imported when the group is invoked (or its ``--help`` asked for); the root's
help and shell completion show the declared one-line help without importing anything. Each
``*_cmd`` module keeps its heavy imports (cryptography, SQLAlchemy, FastAPI, services) inside its
command functions, so ``smki party --help`` imports only Typer, Rich and that module.
``tests/cli/test_cli_imports.py`` guards this.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, ClassVar

import typer
from typer import _click
from typer.core import TyperCommand, TyperGroup


@dataclass(frozen=True)
class LazyEntry:
    target: str  # "package.module:attribute": a typer.Typer (a group) or a function (one command)
    help: str

    def load(self, name: str) -> _click.Command:
        module_name, _, attribute = self.target.partition(":")
        obj = getattr(importlib.import_module(module_name), attribute)
        if isinstance(obj, typer.Typer):
            command: _click.Command = typer.main.get_group(obj)
        else:
            single = typer.Typer(add_completion=False)
            single.command(name)(obj)
            command = typer.main.get_command(single)
        command.name = name
        _plain_help(command)
        return command


def _plain_help(command: _click.Command) -> None:
    """Help as plain text (Click's formatter), not Rich panels: Typer's Rich help imports Rich's
    Markdown and markdown-it (~0.1 s), a third of the budget for ``--help``. Errors are formatted
    by ``main.run`` in any case."""
    command.rich_markup_mode = None  # type: ignore[attr-defined]
    for sub in getattr(command, "commands", {}).values():
        _plain_help(sub)


class _Stub(TyperCommand):
    """What the root's help and completion list for a group not yet imported: its name and help."""


def _plain_bool_flags() -> None:
    """Boolean flags are coerced without Pydantic.

    Typer coerces every parameter value through a Pydantic ``TypeAdapter`` (~0.1 s to import, a
    third of the budget for ``--help``), even the unset ``--help`` and ``--install-completion`` of
    the groups on the way to a sub-command. A flag's value is already ``True``, ``False`` or
    ``None``; it needs no coercion. Every other parameter keeps Typer's.
    """
    from typer._coercion import PassThroughRuntimeParam
    from typer.core import _TyperParameter

    typer_runtime_param = _TyperParameter.get_runtime_param

    def get_runtime_param(self: _TyperParameter) -> Any:
        if self._runtime_param is None and self.type_descriptor.annotation is bool and getattr(self, "is_flag", False):
            self._runtime_param = PassThroughRuntimeParam(annotation=bool,
                                                          parameter_info=self.type_descriptor.parameter_info)
        return typer_runtime_param(self)

    _TyperParameter.get_runtime_param = get_runtime_param  # type: ignore[method-assign]


_plain_bool_flags()


class LazyGroup(TyperGroup):
    """A Typer group whose sub-commands are ``LazyEntry``s, loaded on first use."""

    entries: ClassVar[dict[str, LazyEntry]] = {}
    _listing = False

    def list_commands(self, ctx: _click.Context) -> list[str]:
        names = super().list_commands(ctx)
        return names + [name for name in self.entries if name not in self.commands]

    def get_command(self, ctx: _click.Context, cmd_name: str) -> _click.Command | None:
        entry = self.entries.get(cmd_name)
        if entry is not None and cmd_name not in self.commands:
            if self._listing:
                return _Stub(cmd_name, help=entry.help, short_help=entry.help)
            self.commands[cmd_name] = entry.load(cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_help(self, ctx: _click.Context, formatter: _click.HelpFormatter) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False

    def shell_complete(self, ctx: _click.Context, incomplete: str) -> Any:
        self._listing = True
        try:
            return super().shell_complete(ctx, incomplete)
        finally:
            self._listing = False


class LazyCommands:
    """The registry behind one lazily-loaded root group (``group_class`` goes to ``typer.Typer(cls=…)``)."""

    def __init__(self) -> None:
        self.entries: dict[str, LazyEntry] = {}
        self.group_class: type[LazyGroup] = type("SmkiGroup", (LazyGroup,), {"entries": self.entries})

    def add(self, name: str, target: str, help: str) -> None:
        self.entries[name] = LazyEntry(target, help)
