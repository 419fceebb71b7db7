"""servicehost's pythonservice.exe, off Windows: what a manager launches for a pywin32 service that
``win32serviceutil.InstallService`` installed from its class string::

    python -m servicehost.compat.pythonservice --name NAME [--state-dir DIR] [--config FILE] CLASS_STRING [ARGS...]

It imports the class the class string names (``hosting.load_class``: the module by its name, so
the script's ``__main__`` block never runs) and hosts it as the service NAME under the manager
that launched it, until it stops; its exit code is the host's (``servicehost.ExitCode``). An
unusable command line or class string is exit 2, with one line on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ..errors import ExitCode, ServiceHostError


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m servicehost.compat.pythonservice", allow_abbrev=False,
                                     description="Run the pywin32 service class CLASS_STRING names as service NAME.")
    parser.add_argument("--name", required=True, help="the installed service's name")
    parser.add_argument("--state-dir", help="where the service keeps its state")
    parser.add_argument("--config", help="TOML settings file")
    parser.add_argument("class_string", metavar="CLASS_STRING", help="package.module.Class or /path/to/module.Class")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="passed to the class after the service name")
    given = parser.parse_args(argv)
    from . import hosting  # after parsing: --help needs none of it

    # What the install recorded holds for the whole process: the class's own calls that read the
    # settings (Get/SetServiceCustomOption) see the service's state dir and config file too.
    if given.state_dir:
        os.environ["SERVICEHOST_STATE_DIR"] = given.state_dir
    if given.config:
        os.environ["SERVICEHOST_CONFIG"] = given.config
    try:
        cls = hosting.load_class(given.class_string)
        settings = {"state_dir": given.state_dir} if given.state_dir else None
        return hosting.run_framework(cls, given.args, name=given.name, settings=settings,
                                     config_file=Path(given.config) if given.config else None)
    except ServiceHostError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return int(exc.exit_code)


if __name__ == "__main__":
    code = main()
    from .. import logs

    logs.flush()
    sys.exit(code if code in set(ExitCode) else ExitCode.CRASH)
