# The seed's pywin32 sample (shared/seed), unchanged but for its import lines.
from servicehost.compat import win32serviceutil
from servicehost.compat import win32service
from servicehost.compat import win32event
from servicehost.compat import servicemanager
import socket


class AppServerSvc (win32serviceutil.ServiceFramework):
    _svc_name_ = 'SampleService'
    _svc_display_name_ = 'Sample Service'

    def __init__(self,args):
        win32serviceutil.ServiceFramework.__init__(self,args)
        self.hWaitStop = win32event.CreateEvent(None,0,0,None)
        socket.setdefaulttimeout(60)
        self.is_alive = True

    def SvcStop(self):
        self.ReportServiceStatus(win32service.SERVICE_STOP_PENDING)
        win32event.SetEvent(self.hWaitStop)
        self.is_alive = False

    def SvcDoRun(self):
        servicemanager.LogMsg(servicemanager.EVENTLOG_INFORMATION_TYPE,
                              servicemanager.PYS_SERVICE_STARTED,
                              (self._svc_name_,''))
        self.main()

    def main(self):
        # Your main code here
        pass

if __name__ == '__main__':
    win32serviceutil.HandleCommandLine(AppServerSvc)
