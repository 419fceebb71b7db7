"""A pywin32 service that keeps its own log file — the pattern of the logging examples shared for
pywin32 services: ``logging.basicConfig(filename=...)`` at import, a ServiceFramework whose hooks log
through ``logging``, HandleCommandLine. Written for the tests; only its pywin32 imports name
servicehost.compat. Its log file sits beside it (``logging_app.log``), on Windows as on Linux."""

import logging
import os

from servicehost.compat import servicemanager, win32event, win32service, win32serviceutil

LOG_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "logging_app.log")
logging.basicConfig(filename=LOG_FILE, level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
log = logging.getLogger("logging_app")


class LoggingService(win32serviceutil.ServiceFramework):
    _svc_name_ = "shlogapp"
    _svc_display_name_ = "servicehost logging pattern"
    _svc_description_ = "Logs into its own file through the logging module."

    def __init__(self, args):
        win32serviceutil.ServiceFramework.__init__(self, args)
        self.stop_event = win32event.CreateEvent(None, 0, 0, None)
        log.info("init %s", args[0])

    def SvcStop(self):
        log.info("stop requested")
        self.ReportServiceStatus(win32service.SERVICE_STOP_PENDING)
        win32event.SetEvent(self.stop_event)

    def SvcDoRun(self):
        servicemanager.LogMsg(servicemanager.EVENTLOG_INFORMATION_TYPE, servicemanager.PYS_SERVICE_STARTED,
                              (self._svc_name_, ""))
        log.info("running")
        ticks = 0
        while win32event.WaitForSingleObject(self.stop_event, 100) == win32event.WAIT_TIMEOUT:
            ticks += 1
            if ticks == 1:
                log.warning("first tick")
        log.info("stopped")


if __name__ == "__main__":
    win32serviceutil.HandleCommandLine(LoggingService)
