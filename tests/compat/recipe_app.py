"""A pywin32 service in the pattern of the old recipe many projects copied: a ``Service`` base class
whose ``start``/``stop`` a subclass overrides, ``win32api.Sleep`` in the subclass's loop, and
``instart()``, which installs the class by its class string (``C:\\path\\module.Class``) with an
automatic start and starts it. Written for the tests; only its pywin32 imports name
servicehost.compat. Run with no arguments it installs and starts itself; with arguments it takes
pywin32's command line. What it does is traced into ``recipe_app.trace`` beside it."""

import os
import sys
from os.path import abspath, splitext

from servicehost.compat import servicemanager, win32api, win32event, win32service, win32serviceutil

TRACE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "recipe_app.trace")


class Service(win32serviceutil.ServiceFramework):
    _svc_name_ = "_unNamed"
    _svc_display_name_ = "_Service Template"

    def __init__(self, *args):
        win32serviceutil.ServiceFramework.__init__(self, *args)
        self.log("init")
        self.stop_event = win32event.CreateEvent(None, 0, 0, None)

    def log(self, msg):
        servicemanager.LogInfoMsg(str(msg))
        with open(TRACE, "a") as trace:
            trace.write(f"{msg}\n")

    def sleep(self, sec):
        win32api.Sleep(int(sec * 1000), True)

    def SvcDoRun(self):
        self.ReportServiceStatus(win32service.SERVICE_START_PENDING)
        try:
            self.ReportServiceStatus(win32service.SERVICE_RUNNING)
            self.log("start")
            self.start()
            self.log("wait")
            win32event.WaitForSingleObject(self.stop_event, win32event.INFINITE)
            self.log("done")
        except Exception as x:
            self.log(f"Exception : {x}")
            self.SvcStop()

    def SvcStop(self):
        self.ReportServiceStatus(win32service.SERVICE_STOP_PENDING)
        self.log("stopping")
        self.stop()
        self.log("stopped")
        win32event.SetEvent(self.stop_event)
        self.ReportServiceStatus(win32service.SERVICE_STOPPED)

    def start(self):  # to be overridden
        pass

    def stop(self):  # to be overridden
        pass


def instart(cls, name, display_name=None, stay_alive=True):
    """Install and start (auto) a service: ``cls`` (a Service subclass) as ``name``."""
    cls._svc_name_ = name
    cls._svc_display_name_ = display_name or name
    try:
        module_path = sys.modules[cls.__module__].__file__
    except AttributeError:  # a frozen program
        module_path = sys.executable
    module_file = splitext(abspath(module_path))[0]
    cls._svc_reg_class_ = f"{module_file}.{cls.__name__}"
    if stay_alive:
        win32api.SetConsoleCtrlHandler(lambda x: True, True)
    try:
        win32serviceutil.InstallService(cls._svc_reg_class_, cls._svc_name_, cls._svc_display_name_,
                                        startType=win32service.SERVICE_AUTO_START)
        print("Install ok")
        win32serviceutil.StartService(cls._svc_name_)
        print("Start ok")
    except Exception as x:
        print(str(x))


class Heartbeat(Service):
    _svc_name_ = "shrecipe"
    _svc_display_name_ = "servicehost recipe pattern"

    def start(self):
        self.runflag = True
        alive = False
        while self.runflag:
            self.sleep(0.1)
            if not alive:
                self.log("I'm alive ...")
                alive = True

    def stop(self):
        self.runflag = False
        self.log("I'm done")


if __name__ == "__main__":
    if len(sys.argv) == 1:
        instart(Heartbeat, "shrecipe", "servicehost recipe pattern")
    else:
        win32serviceutil.HandleCommandLine(Heartbeat)
