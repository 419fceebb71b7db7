"""The seed's AppServerSvc with a trace of its hooks and LogMsg calls, for the alike test.

Only instrumentation is added: each hook appends a JSON line to the file named by the service's
custom option ``trace`` (GetServiceCustomOption: the registry on Windows, the state dir elsewhere),
and ``main`` waits for the stop event (the seed's ``main`` is an empty placeholder). The same file
runs under the real SCM with real pywin32 and on Linux under servicehost.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from seed_app import AppServerSvc

from servicehost.compat import (
    servicemanager,
    win32event,
    win32service,
    win32serviceutil,
)

NAME = "shseedtrace"


def trace(hook, **data):
    path = win32serviceutil.GetServiceCustomOption(NAME, "trace")
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"t": time.time(), "hook": hook, **data}) + "\n")


_log_msg = servicemanager.LogMsg


def traced_log_msg(kind, event_id, inserts=None):
    trace("LogMsg", type=kind, id=event_id, inserts=list(inserts or ()))
    _log_msg(kind, event_id, inserts)


servicemanager.LogMsg = traced_log_msg


class TracedAppServerSvc(AppServerSvc):
    _svc_name_ = NAME
    _svc_display_name_ = "servicehost seed trace"

    def __init__(self, args):
        trace("__init__", args=list(args))
        super().__init__(args)

    def GetAcceptedControls(self):
        return super().GetAcceptedControls() | win32service.SERVICE_ACCEPT_PARAMCHANGE

    def SvcDoRun(self):
        trace("SvcDoRun")
        super().SvcDoRun()
        trace("SvcDoRun-end")

    def main(self):
        trace("main")
        rc = win32event.WaitForSingleObject(self.hWaitStop, win32event.INFINITE)
        trace("main-end", rc=rc)

    def SvcStop(self):
        trace("SvcStop")
        super().SvcStop()

    def SvcOtherEx(self, control, event_type, data):
        trace("SvcOtherEx", control=control)


if __name__ == "__main__":
    win32serviceutil.HandleCommandLine(TracedAppServerSvc)
