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
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import typer
from typer import _click
from typer.core import TyperCommand, TyperGroup

if TYPE_CHECKING:
    from typer.core import _TyperParameter


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


_Leaf = Callable[[Any, "_TyperParameter", _click.Context], Any]


def _leaf_coercion(annotation: Any, info: Any) -> _Leaf | None:
    """How to coerce one command-line value to ``annotation`` without Pydantic, or ``None`` to
    leave it to Typer (dates, clamped numbers, custom parsers, anything less common)."""
    from enum import Enum
    from pathlib import Path
    from typing import get_origin

    from typer._param_types import choice_coercion_annotation, coerce_cli_choice, coerce_cli_path

    if info.parser is not None or get_origin(annotation) not in (None, Literal):
        return None
    if annotation is str:
        return lambda value, param, ctx: value.decode() if isinstance(value, bytes) else str(value)
    if annotation in (int, float):
        if info.clamp:
            return None
        return _number(annotation, info.min, info.max)
    choice = choice_coercion_annotation(annotation, info)
    if choice is not None:
        choices, case_sensitive = choice

        def one_of(value: Any, param: _TyperParameter, ctx: _click.Context) -> Any:
            try:
                return coerce_cli_choice(value, choices=choices, case_sensitive=case_sensitive, ctx=ctx)
            except ValueError as exc:
                raise _click.exceptions.BadParameter(str(exc), ctx=ctx, param=param) from exc

        return one_of
    path_type = info.path_type or annotation
    if isinstance(path_type, type) and issubclass(path_type, Path) and not issubclass(path_type, Enum):
        def path(value: Any, param: _TyperParameter, ctx: _click.Context) -> Any:
            if isinstance(value, str | bytes):
                value = path_type(os.fsdecode(value))
            return coerce_cli_path(value, info, path_type=path_type, param=param, ctx=ctx)

        return path
    return None


def _number(kind: type[int] | type[float], low: float | None, high: float | None) -> _Leaf:
    name = "integer" if kind is int else "number"

    def number(value: Any, param: _TyperParameter, ctx: _click.Context) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise _click.exceptions.BadParameter(f"{value!r} is not a valid {name}.", ctx=ctx, param=param)
        try:
            result = kind(value.strip()) if isinstance(value, str) else kind(value)
        except ValueError:
            raise _click.exceptions.BadParameter(f"{value!r} is not a valid {name}.", ctx=ctx, param=param) from None
        if (low is not None and result < low) or (high is not None and result > high):
            bounds = f"{'' if low is None else f'{low}<='}x{'' if high is None else f'<={high}'}"
            raise _click.exceptions.BadParameter(f"{result} is not in the range {bounds}.", ctx=ctx, param=param)
        return result

    return number


def _without_pydantic() -> None:
    """Command-line values are coerced without Pydantic.

    Typer coerces every parameter value through a Pydantic ``TypeAdapter``: importing Pydantic is
    ~0.06 s on an idle machine, a tenth of a simple command's budget and a fifth of ``--help``'s,
    even for the unset ``--help`` of the groups on the way to a sub-command. What smki's commands
    take (booleans, strings, numbers, paths, choices, and lists of those) is coerced here with
    Typer's own helpers for paths and choices, so the checks and messages stay Typer's; any other
    annotation (dates, clamped numbers, custom parsers) still goes through Typer's adapters.
    """
    from typing import get_args, get_origin

    from typer._coercion import PassThroughRuntimeParam, RuntimeParam
    from typer.core import _TyperParameter

    @dataclass(frozen=True)
    class PlainRuntimeParam(RuntimeParam):
        leaf: _Leaf
        many: bool

        def _coerce_value(self, value: Any, param: _TyperParameter, ctx: _click.Context) -> Any:
            if not self.many:
                return self.leaf(value, param, ctx)
            items = value if isinstance(value, list | tuple) else [value]
            return [self.leaf(item, param, ctx) for item in items]

    typer_runtime_param = _TyperParameter.get_runtime_param

    def get_runtime_param(self: _TyperParameter) -> Any:
        if self._runtime_param is None and self.type_descriptor.file_annotation is None:
            annotation: Any = self.type_descriptor.annotation
            info = self.type_descriptor.parameter_info
            if annotation is bool and getattr(self, "is_flag", False):
                self._runtime_param = PassThroughRuntimeParam(annotation=bool, parameter_info=info)
            else:
                many = get_origin(annotation) is list and len(get_args(annotation)) == 1
                leaf = _leaf_coercion(get_args(annotation)[0] if many else annotation, info)
                if leaf is not None:
                    self._runtime_param = PlainRuntimeParam(annotation=annotation, parameter_info=info, leaf=leaf,
                                                            many=many)
        return typer_runtime_param(self)

    _TyperParameter.get_runtime_param = get_runtime_param  # type: ignore[method-assign]


_without_pydantic()


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
