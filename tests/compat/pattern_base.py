"""A base class that hides pywin32's hooks behind start/stop/main, as public service code often
writes one (the widely copied "SMWinservice" blog post): a subclass names itself, fills the three
methods and calls ``parse_command_line()``. Written for the tests; only its imports name
servicehost.compat."""

import socket

from servicehost.compat import servicemanager, win32event, win32service, win32serviceutil


class ServiceBase(win32serviceutil.ServiceFramework):
    _svc_name_ = "ServiceBase"
    _svc_display_name_ = "Service base class"
    _svc_description_ = "Subclass me: start, stop, main"

    @classmethod
    def parse_command_line(cls):
        win32serviceutil.HandleCommandLine(cls)

    def __init__(self, args):
        win32serviceutil.ServiceFramework.__init__(self, args)
        self.stop_event = win32event.CreateEvent(None, 0, 0, None)
        socket.setdefaulttimeout(60)

    def SvcStop(self):
        self.stop()
        self.ReportServiceStatus(win32service.SERVICE_STOP_PENDING)
        win32event.SetEvent(self.stop_event)

    def SvcDoRun(self):
        self.start()
        servicemanager.LogMsg(servicemanager.EVENTLOG_INFORMATION_TYPE, servicemanager.PYS_SERVICE_STARTED,
                              (self._svc_name_, ""))
        self.main()

    def start(self):
        """Runs first in SvcDoRun."""

    def stop(self):
        """Runs in SvcStop: make main() return."""

    def main(self):
        """The service's work, until stop() makes it return."""
