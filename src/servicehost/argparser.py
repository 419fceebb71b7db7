"""The project's parser classes (argparse): options never abbreviated, a parse error one line,
``--version`` read only when asked. Imported on first use (``arguments.ArgumentParser``,
``cli.ArgumentParser``): a service started with ``run TARGET --SETTING VALUE ...`` reads its
command line without argparse (``cli.parse``), so its start never loads it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from .arguments import _SHOWN, Namespace, one_line, option_strings, terminal_columns
from .errors import UsageError


class HelpFormatter(argparse.HelpFormatter):
    """argparse's, but the terminal width is read as ``shutil.get_terminal_size`` reads it, without
    importing shutil: argparse builds a formatter for every argument it adds, and shutil's imports
    (bz2, lzma, fnmatch) are a start cost for every service (most under Wine, where each costs ms)."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        if width is None:
            width = terminal_columns() - 2
        super().__init__(prog, indent_increment, max_help_position, width)


class ArgumentParser(argparse.ArgumentParser):
    """The project's only parser class: options are never abbreviated (``--work`` does not mean
    ``--workers``; ``--password`` is not ``--password-stdin``), and a parse error raises
    :class:`UsageError` (one line, exit 2) instead of printing usage and exiting. The value
    given to an unknown option is never repeated (it may be a secret typed in the wrong place)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs["allow_abbrev"] = False
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def error(self, message: str) -> NoReturn:
        prog = getattr(getattr(self, "chosen", None), "prog", self.prog)
        raise UsageError(f"{message} (see: {prog} --help)")

    def parse_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                   namespace: Namespace | None = None) -> Namespace:
        argv = list(sys.argv[1:] if args is None else args)
        parsed, extras = self.parse_known_args(argv, Namespace() if namespace is None else namespace)
        if extras:
            self.error(self._unrecognized(argv, extras))
        return parsed

    def _unrecognized(self, argv: list[str], extras: list[str]) -> str:
        options = [t.partition("=")[0] for t in extras if t.startswith("-") and t != "-"]
        if options:
            import difflib  # only on this error path

            known = [o for o in option_strings(self) if o.startswith("--")]
            hint = difflib.get_close_matches(options[0], known, 1)
            return f"unknown option {one_line(options[0][:_SHOWN])}" + (f" (did you mean {hint[0]}?)" if hint else "")
        where = len(argv) - argv[::-1].index(extras[0]) if extras[0] in argv else 0  # its last use
        return (f"an unexpected argument (word {where} of the command line; every option takes the form "
                "--OPTION VALUE, and only one TARGET is given)")


class VersionAction(argparse.Action):
    """``--version``, looked up only when asked (package metadata is slow to read)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help="show the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        parser.exit(0, f"{parser.prog} {version()}\n")


def version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("servicehost")
    except PackageNotFoundError:
        return "unknown"


__all__ = ["ArgumentParser", "HelpFormatter", "VersionAction", "version"]
