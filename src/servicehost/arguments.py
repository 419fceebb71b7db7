"""What the command line is made of: the parser class every command uses (options never
abbreviated, errors as one line: ``argparser.py``, named here on first use), the argument types
shared by the commands, and the :class:`Command` / :class:`Invocation` records. ``cli.py`` (run,
debug, settings, dispatch) and ``manage.py`` (the manager commands) both build on it; neither
imports the other's internals. This module imports no argparse: a service's start reads its
``run TARGET --SETTING VALUE ...`` line without it (``cli.parse``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

from . import config as config_mod
from .errors import UsageError, printable

if TYPE_CHECKING:  # the same record to a type checker (``_records.py``)
    import argparse
    from typing import NamedTuple

    from .argparser import ArgumentParser, HelpFormatter
else:
    from ._records import NamedTuple

_SHOWN = 300  # longest message taken from an exception into the one-line error

#: Escape control characters (and undecodable bytes), so an error is always one line whatever
#: the input held, and prints on any console.
one_line = printable


def terminal_columns(fallback: int = 80) -> int:
    """``shutil.get_terminal_size().columns``: $COLUMNS, else the terminal of stdout, else ``fallback``."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or fallback


def _type_error(message: str) -> Exception:
    """argparse's ArgumentTypeError (the argument types below run inside argparse: it is loaded)."""
    import argparse

    return argparse.ArgumentTypeError(message)


def __getattr__(name: str) -> object:
    """The parser classes (``argparser.py``), imported on first use: a service's start needs none."""
    if name in ("ArgumentParser", "HelpFormatter"):
        from . import argparser

        return getattr(argparser, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def number(kind: type = float, *, min: float | None = None, max: float | None = None,
           ) -> Callable[[str], int | float]:
    """An argparse ``type=`` for a command option's number, as strict as a setting's: ASCII
    digits only, finite, within [min, max] (``--wait ٣``, ``--wait nan`` are errors)."""
    kind_name = "an integer" if kind is int else "a number"
    bounds = (f" from {min:g} to {max:g}" if min is not None and max is not None else
              f" >= {min:g}" if min is not None else f" <= {max:g}" if max is not None else "")

    def convert(text: str) -> int | float:
        value = config_mod.text_number(text, kind)
        if value is None or (min is not None and value < min) or (max is not None and value > max):
            raise _type_error(f"expected {kind_name}{bounds}, found {config_mod.shown(text)}")
        return value

    convert.__name__ = kind.__name__  # what argparse calls the type in its messages
    return convert


def name_problem(value: str) -> str:
    """What makes ``value`` no service name a manager can hold (each manager checks its own rules
    again): empty, surrounding spaces, control characters or path separators; "" when none."""
    return ("it is empty" if not value.strip() else "it has spaces around it" if value != value.strip()
            else "it is longer than 256 characters" if len(value) > 256
            else "it holds a path separator" if "/" in value or "\\" in value
            else config_mod.text_problem(value) or "")


def service_name(value: str) -> str:
    """An argparse ``type=`` for ``--name``: a name a manager can hold (:func:`name_problem`)."""
    problem = name_problem(value)
    if problem:
        raise _type_error(f"expected a service name, found {config_mod.shown(value)}: {problem}")
    return value


def text(value: str) -> str:
    """An argparse ``type=`` for free text (a display name, an account): no control characters."""
    problem = config_mod.text_problem(value)
    if problem:
        raise _type_error(f"expected text on one line, found {config_mod.shown(value)}: {problem}")
    return value


def path(value: str) -> str:
    """An argparse ``type=`` for a path a manager is given: it fits the OS limits, no control characters."""
    problem = config_mod.path_problem(value)
    if problem:
        raise _type_error(f"expected a path, found {config_mod.shown(value)}: {problem}")
    return value


def option_strings(parser: argparse.ArgumentParser) -> list[str]:
    """Every option string ``parser`` and its chosen command's parser know."""
    out = list(getattr(parser, "_option_string_actions", {}))
    chosen = getattr(parser, "chosen", None)
    if chosen is not None:
        out += option_strings(chosen)
    return out


def is_target(word: str) -> bool:
    """Whether a manager command's word is a TARGET (``path/to/file.py[:Class]``,
    ``package.module:Class``): it holds ``.py``, ``:`` or a path separator. Any other word is the
    NAME of an installed service (``servicehost start NAME``)."""
    return ".py" in word or ":" in word or "/" in word or "\\" in word


class Namespace(SimpleNamespace):
    """Parsed arguments, as argparse's Namespace holds them (attributes, ``vars()``, ``in``,
    equality): what the project's parser fills (``ArgumentParser.parse_args``), and what a
    manager's ``run TARGET --OPTION VALUE ...`` line gives when read without argparse (``cli.parse``)."""

    def __contains__(self, key: str) -> bool:
        return key in self.__dict__


class Invocation(NamedTuple):
    """What a command handler gets: parsed arguments, the service class, loaded settings."""

    args: Namespace
    """What the command line said (:class:`Namespace`)."""
    service_cls: type | None
    """None when the command was given an installed service's NAME (or, like ``list``, no word)."""
    target: str
    loaded: config_mod.Loaded
    config_file: Path | None
    cli_settings: dict[str, str]
    """The settings given as flags, raw (a manager's launch command repeats them)."""
    name: str = ""
    """The installed service's NAME given instead of a TARGET (``servicehost stop NAME``)."""


#: What a command takes after its name (:attr:`Command.operand`).
TARGET, NAME_OR_TARGET, NOTHING = "target", "name", "none"
#: A NAME, a TARGET, or a URL (:func:`is_url`) that the command opens itself (``jobs``: a store).
NAME_TARGET_OR_URL = "url"


def is_url(word: str) -> bool:
    """Whether a command's word is a URL (``sqlite:///...``, ``postgresql://...``), not a TARGET."""
    return "://" in word


class Command(NamedTuple):
    name: str
    help: str
    handler: Callable[[Invocation], int]
    """Runs the command; its exit code (an ExitCode; ``status``: a StatusCode, as LSB)."""
    add_arguments: Callable[..., None] | None = None
    """Adds the command's own options to its parser (an ``argparse.ArgumentParser``)."""
    settings: tuple[str, ...] | None = None
    """The setting flags the command takes: None, every one (the host's and the service's: it
    runs the service, or installs what will); else only these host settings (a verb acting on
    an installed service takes ``("manager",)``: the service has its own settings already).
    ``--config`` is always taken (it may choose the manager)."""
    operand: str = TARGET
    """TARGET: a TARGET (run, install); NAME_OR_TARGET: an installed service's NAME or a TARGET
    (:func:`is_target` tells them apart); NAME_TARGET_OR_URL: either, or a URL the command opens
    itself (``Invocation.target``, with no service class); NOTHING: no word (list)."""


def choice(values: Sequence[str]) -> Callable[[str], str]:
    """An argparse ``type=`` for one of ``values``, in any case (``--start AUTO`` is ``auto``):
    the value as ``values`` spell it. Pass ``choices=values`` too, for the help and the error."""
    def convert(text: str) -> str:
        return config_mod.choice_of(text, values) or text

    convert.__name__ = "choice"
    return convert
