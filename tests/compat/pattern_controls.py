"""A service that takes more controls than stop, as pywin32's serviceEvents demo does: it widens
GetAcceptedControls() and handles what arrives in SvcOtherEx (a PARAMCHANGE, the codes 128-255 an
application defines), logging each with LogMsg. It does not pause."""

from servicehost.compat import servicemanager, win32event, win32service, win32serviceutil

from pattern_trace import trace


class ControlledService(win32serviceutil.ServiceFramework):
    _svc_name_ = "shc1ctl"
    _svc_display_name_ = "servicehost pattern: controls"

    def __init__(self, args):
        win32serviceutil.ServiceFramework.__init__(self, args)
        self.stop_event = win32event.CreateEvent(None, 0, 0, None)

    def GetAcceptedControls(self):
        return win32serviceutil.ServiceFramework.GetAcceptedControls(self) | win32service.SERVICE_ACCEPT_PARAMCHANGE

    def SvcOtherEx(self, control, event_type, data):
        if control == win32service.SERVICE_CONTROL_PARAMCHANGE:
            message = "parameters changed"
        else:
            message = "control %d (type %s, data %r)" % (control, event_type, data)
        trace(self._svc_name_, "SvcOtherEx", control=control, event_type=event_type, data=data)
        servicemanager.LogMsg(servicemanager.EVENTLOG_INFORMATION_TYPE, 0xF000, (message, ""))

    def SvcStop(self):
        self.ReportServiceStatus(win32service.SERVICE_STOP_PENDING)
        win32event.SetEvent(self.stop_event)

    def SvcDoRun(self):
        trace(self._svc_name_, "SvcDoRun")
        win32event.WaitForSingleObject(self.stop_event, win32event.INFINITE)
        trace(self._svc_name_, "SvcDoRun-end")


if __name__ == "__main__":
    win32serviceutil.HandleCommandLine(ControlledService)
