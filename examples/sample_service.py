"""Example (a): the seed's pywin32 ``SampleService``, written with servicehost.

The pywin32 original needs ``ServiceFramework``, ``CreateEvent``/``SetEvent``/``WaitForSingleObject``
and ``HandleCommandLine``. Here the stop event is the StopToken, the SCM status reports are the
host's job, and the same file runs in a terminal, under the SCM, systemd or supervisord:

    servicehost run examples/sample_service.py        # or: python examples/sample_service.py run
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

import servicehost
from servicehost import Service, StopToken, setting


@dataclass(frozen=True, kw_only=True)
class SampleSettings:
    interval: float = setting(5.0, "seconds between two rounds of the main loop", min=0.01, max=3600)


class SampleService(Service[SampleSettings]):
    """Logs a line every ``interval`` seconds until stopped; answers pause, continue and controls."""

    name = "SampleService"
    description = "Sample Service: the seed's pywin32 example on servicehost"

    def start(self) -> None:
        socket.setdefaulttimeout(60)
        self.rounds = 0
        self.paused = False
        self.log.info("%s started", self.name)  # pywin32: servicemanager.LogMsg(PYS_SERVICE_STARTED)

    def run(self, stop: StopToken) -> None:
        while not stop.wait(self.settings.interval):
            if not self.paused:
                self.main()

    def main(self) -> None:
        """Your main code here."""
        self.rounds += 1
        self.log.info("round %d", self.rounds)

    def stop(self, deadline: servicehost.Deadline) -> None:
        self.log.info("%s stopping after %d rounds", self.name, self.rounds)

    def pause(self) -> None:
        self.paused = True
        self.log.info("paused")

    def resume(self) -> None:
        self.paused = False
        self.log.info("continued")

    def reload(self) -> None:
        self.log.info("reloaded")

    def control(self, code: int) -> None:
        self.log.info("control code %d", code)


if __name__ == "__main__":
    servicehost.main(SampleService)  # pywin32: win32serviceutil.HandleCommandLine(AppServerSvc)
