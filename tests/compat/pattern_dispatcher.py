"""The PyInstaller-style service script: with no arguments it hands itself to the service
dispatcher (PrepareToHostSingle + StartServiceCtrlDispatcher), as a frozen exe the SCM launches
does; with arguments it is its own command line. ``_exe_name_``/``_exe_args_`` make install
register "python this_script.py" (no arguments), as a frozen exe registers itself. From a
terminal, with no arguments, the dispatcher fails with error 1063, as on Windows."""

import os
import sys

from servicehost.compat import servicemanager, win32event, win32service, win32serviceutil

from pattern_trace import trace


class DispatchedService(win32serviceutil.ServiceFramework):
    _svc_name_ = "shc1disp"
    _svc_display_name_ = "servicehost pattern: dispatcher"
    _exe_name_ = sys.executable
    _exe_args_ = '"' + os.path.abspath(__file__) + '"'

    def __init__(self, args):
        win32serviceutil.ServiceFramework.__init__(self, args)
        trace(self._svc_name_, "__init__", args=list(args), argv=len(sys.argv))
        self.stop_event = win32event.CreateEvent(None, 0, 0, None)

    def SvcStop(self):
        trace(self._svc_name_, "SvcStop")
        self.ReportServiceStatus(win32service.SERVICE_STOP_PENDING)
        win32event.SetEvent(self.stop_event)

    def SvcDoRun(self):
        trace(self._svc_name_, "SvcDoRun", running_as_service=bool(servicemanager.RunningAsService()))
        win32event.WaitForSingleObject(self.stop_event, win32event.INFINITE)
        trace(self._svc_name_, "SvcDoRun-end")


if __name__ == "__main__":
    if len(sys.argv) == 1:
        servicemanager.Initialize()
        servicemanager.PrepareToHostSingle(DispatchedService)
        servicemanager.StartServiceCtrlDispatcher()
    else:
        win32serviceutil.HandleCommandLine(DispatchedService)
