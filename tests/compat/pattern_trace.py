"""Instrumentation the pattern scripts share (not part of any pattern): each hook appends a JSON
line to the file named by the service's custom option ``trace`` (GetServiceCustomOption: the
registry under Windows, the state dir elsewhere). Nothing is written while the option is unset."""

import json

from servicehost.compat import win32serviceutil


def trace(name, hook, **data):
    path = win32serviceutil.GetServiceCustomOption(name, "trace")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"hook": hook, **data}) + "\n")
