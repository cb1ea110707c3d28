"""The small command-line layer the `advisor` command is built on, over the standard library's argparse.

Commands are plain functions whose parameters carry `Annotated[T, Option(...)]` or
`Annotated[T, Argument(...)]` markers; an `App` registers them (and sub-apps such as `models`),
parses argv and calls the one command named. Only that command's parser is built, from its
signature, so that a cold `advisor recommend` pays for nothing else.

It replaces typer, dropped for start-up time: typer 0.29 imports pydantic and builds a TypeAdapter
for every parameter at parse time (about 90 ms of a 276 ms cold `advisor recommend`); older typers
import rich instead and are no faster.

Usage errors (unknown command or option, missing option, a value that does not convert) raise
`UsageError`: the caller prints it as one line and exits with code 2.
"""

from __future__ import annotations

import argparse
import inspect
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_REQUIRED = inspect.Parameter.empty
_METAVARS = {str: "TEXT", int: "INTEGER", float: "FLOAT", Path: "PATH", bool: ""}
_HELP_NAMES = ("-h", "--help")


@dataclass(frozen=True, init=False)
class Option:
    """An option marker: `Annotated[int, Option("--top", "-n", help=...)]`; no names: `--param-name`.

    A bool option is a flag (`--json`), or an on/off pair written `"--name/--no-name"`.
    """

    names: tuple[str, ...]
    help: str
    show_default: bool

    def __init__(self, *names: str, help: str = "", show_default: bool = True) -> None:
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "help", help)
        object.__setattr__(self, "show_default", show_default)


@dataclass(frozen=True)
class Argument:
    """A positional argument marker: `Annotated[Path, Argument(help=...)]`; a list takes any number."""

    help: str = ""
    show_default: bool = True


class Exit(Exception):
    """End the command with this exit code (0: success)."""

    def __init__(self, code: int = 0) -> None:
        super().__init__(code)
        self.code = code


class UsageError(Exception):
    """A bad command line, said in one line; `command` (e.g. `advisor recommend`) adds a --help hint."""

    def __init__(self, message: str, command: str | None = None) -> None:
        super().__init__(message)
        self.message, self.command = message, command

    def __str__(self) -> str:
        return self.message + (f" (see `{self.command} --help`)" if self.command else "")


def echo(message: Any = "", err: bool = False) -> None:
    """Print one line on stdout (stderr with err=True), flushed at once."""
    print("" if message is None else message, file=sys.stderr if err else sys.stdout, flush=True)


# ---------------------------------------------------------------------------------------------
# Parameters: read from a command function's signature.


class _Param:
    """One parameter of a command function (a plain class: a dataclass costs import time)."""

    __slots__ = ("name", "kind", "many", "marker", "default")

    def __init__(self, name: str, kind: type, many: bool, marker: Option | Argument, default: Any) -> None:
        self.name = name
        self.kind = kind  # str, int, float, Path or bool
        self.many = many  # a list: a repeatable option, or an argument taking any number
        self.marker = marker
        self.default = default  # _REQUIRED when there is none

    @property
    def positional(self) -> bool:
        return isinstance(self.marker, Argument)

    def flags(self) -> tuple[list[str], list[str]]:
        """(option strings that set the value on, those that set it off); a flag's default is the other one."""
        names = list(self.marker.names) if isinstance(self.marker, Option) else []
        if not names:
            long = "--" + self.name.replace("_", "-")
            names = [f"{long}/--no-{long[2:]}"] if self.kind is bool else [long]  # unnamed bool: an on/off pair
        on, off = [], []
        for name in names:
            first, _, second = name.partition("/")
            on.append(first.strip())
            if second:
                off.append(second.strip())
        if self.kind is bool and not off and self.default is True:  # a plain flag that turns a default on off
            return [], on
        return on, off

    def label(self) -> str:
        """How messages name it: NAME for an argument, an option's first name."""
        if self.positional:
            return self.name.upper()
        on, off = self.flags()
        return (on or off)[0]


def _unwrap(hint: Any, where: str) -> tuple[type, bool]:
    """(scalar type, is a list) from `T`, `Optional[T]`, `list[T]` or `Optional[list[T]]`."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(rest) != 1:
            raise TypeError(f"{where}: unsupported type {hint!r}")
        hint = rest[0]
    many = typing.get_origin(hint) is list
    if many:
        hint = typing.get_args(hint)[0]
    if hint not in _METAVARS or (many and hint is bool):
        raise TypeError(f"{where}: unsupported type {hint!r}")
    return hint, many


def _params(fn: Callable[..., Any]) -> list[_Param]:
    hints = typing.get_type_hints(fn, include_extras=True)
    out = []
    for name, p in inspect.signature(fn).parameters.items():
        hint, marker = hints.get(name, str), None
        if typing.get_origin(hint) is typing.Annotated:
            hint, *extras = typing.get_args(hint)
            marker = next((e for e in extras if isinstance(e, (Option, Argument))), None)
        if marker is None:  # no default: an argument; a default: an option
            marker = Argument() if p.default is _REQUIRED else Option()
        kind, many = _unwrap(hint, f"{fn.__name__}({name})")
        if kind is bool and (isinstance(marker, Argument) or p.default is _REQUIRED):
            raise TypeError(f"{fn.__name__}({name}): a bool is an option with a default")
        out.append(_Param(name, kind, many, marker, p.default))
    return out


def _convert(param: _Param, text: str, prog: str) -> Any:
    try:
        return param.kind(text)
    except ValueError:
        what = "an integer" if param.kind is int else "a number"
        raise UsageError(f"Invalid value for '{param.label()}': {text!r} is not {what}", prog) from None


# ---------------------------------------------------------------------------------------------
# Parsing and help: argparse, made to raise instead of exiting, options listed as `-m, --model TEXT`.


class _Flag(argparse.Action):
    """A bool option: True when given by one of `on`, False by any other of its names."""

    def __init__(self, option_strings: list[str], dest: str, on: tuple[str, ...] = (), **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, **kwargs)
        self.on = on

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: str | None = None) -> None:
        setattr(namespace, self.dest, option_string in self.on)


class _Formatter(argparse.HelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=34)

    def _format_action_invocation(self, action: argparse.Action) -> str:
        if not action.option_strings:
            return super()._format_action_invocation(action)
        names = sorted(action.option_strings, key=lambda s: s.startswith("--"))  # short names first
        if isinstance(action, _Flag) and action.on and len(action.on) < len(names):
            return " / ".join([", ".join(n for n in names if n in action.on),
                               ", ".join(n for n in names if n not in action.on)])
        return ", ".join(names) + (f" {action.metavar}" if action.metavar else "")


class _Parser(argparse.ArgumentParser):
    extra_help = ""

    def error(self, message: str) -> typing.NoReturn:
        name, _, what = message.partition(": ")  # argparse says "argument --model/-m: expected one argument"
        if name.startswith("argument -") and what:
            option = name.split()[1].split("/")[0]
            message = {"expected one argument": f"Option '{option}' requires an argument"}.get(
                what, f"Option '{option}': {what}")
        raise UsageError(message, self.prog)

    def exit(self, status: int = 0, message: str | None = None) -> typing.NoReturn:
        if message:
            echo(message.rstrip("\n"), err=True)
        raise Exit(status)

    def format_help(self) -> str:
        return super().format_help() + self.extra_help


def _escape(text: str) -> str:
    return text.replace("%", "%%")  # argparse %-formats help and usage


def _help_text(param: _Param) -> str:
    text = param.marker.help
    if param.default is _REQUIRED:
        return f"{text} [required]"
    if param.kind is bool:
        on, off = param.flags()
        return f"{text} [default: {(on if param.default else off)[0]}]" if on and off else text
    if param.marker.show_default and param.default is not None:
        return f"{text} [default: {param.default}]"
    return text


def _parser(params: list[_Param], prog: str, description: str) -> _Parser:
    usage = " ".join([prog, "[OPTIONS]", *(f"[{p.label()}]..." if p.many else p.label() if p.default is _REQUIRED
                                           else f"[{p.label()}]" for p in params if p.positional)])
    parser = _Parser(prog=_escape(prog), usage=_escape(usage), description=_escape(description),
                     formatter_class=_Formatter, add_help=False, allow_abbrev=False)
    arguments, options = parser.add_argument_group("arguments"), parser.add_argument_group("options")
    for p in params:
        help_text = _escape(_help_text(p))
        if p.positional:
            arguments.add_argument(p.name, nargs="*" if p.many else "?", default=None, metavar=p.label(),
                                   help=help_text)
        elif p.kind is bool:
            on, off = p.flags()
            options.add_argument(*on, *off, dest=p.name, action=_Flag, on=tuple(on), default=None, help=help_text)
        else:
            on, _ = p.flags()
            options.add_argument(*on, dest=p.name, action="append" if p.many else "store", default=None,
                                 metavar=_METAVARS[p.kind], help=help_text)
    options.add_argument(*_HELP_NAMES, action="help", help="Show this message and exit.")
    return parser


def _doc(obj: Any) -> str:
    return inspect.cleandoc(obj.__doc__ or "")


def _summary(target: Callable[..., Any] | App) -> str:
    text = target.help if isinstance(target, App) else _doc(target)
    return text.strip().split("\n", 1)[0]


def _run_command(fn: Callable[..., Any], argv: list[str], prog: str, description: str = "",
                 extra_help: str = "") -> Any:
    params = _params(fn)
    parser = _parser(params, prog, description or _doc(fn))
    parser.extra_help = extra_help
    namespace, extra = parser.parse_known_intermixed_args(argv)
    if extra:
        raise UsageError(f"No such option: {extra[0]}" if extra[0].startswith("-")
                         else f"Unexpected extra argument '{extra[0]}'", prog)
    kwargs = {}
    for p in params:
        value = getattr(namespace, p.name)
        if value is None or (p.positional and p.many and not value):
            if p.default is _REQUIRED:
                names = [p.label()] if p.positional else p.flags()[0]
                kind = "argument" if p.positional else "option"
                raise UsageError(f"Missing {kind} " + " / ".join(f"'{n}'" for n in names), prog)
            value = p.default
        elif p.kind is not bool:
            value = [_convert(p, v, prog) for v in value] if p.many else _convert(p, value, prog)
        kwargs[p.name] = value
    return fn(**kwargs)


# ---------------------------------------------------------------------------------------------
# The registry of commands.


class App:
    """Commands by name, and sub-apps (`advisor models use VERSION`); `run(argv)` calls the one named.

    A sub-app's `default` command runs when no subcommand is named (`advisor models`).
    """

    def __init__(self, help: str = "") -> None:
        self.help = help
        self.commands: dict[str, Callable[..., Any] | App] = {}
        self.default_command: Callable[..., Any] | None = None

    def command(self, name: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Register a function as a command; its name defaults to the function's, `_` -> `-`."""
        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            self.commands[name or fn.__name__.replace("_", "-")] = fn
            return fn

        return register

    def add_app(self, app: App, name: str) -> None:
        """Register a group of commands under `name`."""
        self.commands[name] = app

    def default(self) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Register the command this app runs when no subcommand is named."""
        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            self.default_command = fn
            return fn

        return register

    def format_commands(self) -> str:
        if not self.commands:
            return ""
        import shutil
        import textwrap

        width = max(len(name) for name in self.commands)
        columns = max(shutil.get_terminal_size().columns - 2, 2 * width + 20)
        lines = [textwrap.fill(_summary(target), columns, initial_indent=f"  {name:<{width}}  ",
                               subsequent_indent=" " * (width + 4))
                 for name, target in self.commands.items()]
        return "\ncommands:\n" + "\n".join(lines) + "\n"

    def format_help(self, prog: str) -> str:
        return (f"usage: {prog} COMMAND [OPTIONS] [ARGS]...\n\n{self.help}\n{self.format_commands()}\n"
                f"Run `{prog} COMMAND --help` for a command's options.\n")

    def run(self, argv: list[str] | None = None, prog: str = "advisor") -> Any:
        """Parse argv (default sys.argv[1:]) and call the command; UsageError or Exit when it says so."""
        argv = sys.argv[1:] if argv is None else list(argv)
        if argv and argv[0] in self.commands:
            target, name = self.commands[argv[0]], f"{prog} {argv[0]}"
            if isinstance(target, App):
                return target.run(argv[1:], name)
            return _run_command(target, argv[1:], name)
        if self.commands and argv and not argv[0].startswith("-") and self.default_command is not None:
            raise UsageError(f"No such command '{argv[0]}'", prog)  # a group's own command takes no arguments
        if self.default_command is not None:
            return _run_command(self.default_command, argv, prog, self.help, self.format_commands())
        if not argv or argv[0] in _HELP_NAMES:
            echo(self.format_help(prog).rstrip("\n"))
            return None
        if argv[0].startswith("-"):
            raise UsageError(f"No such option: {argv[0]}", prog)
        raise UsageError(f"No such command '{argv[0]}'", prog)
