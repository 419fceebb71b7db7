"""A service on the start/stop/main base class (pattern_base.py, imported from this folder as the
blog post's subclass imports its base): main() loops on a flag that stop() clears."""

import time

from pattern_base import ServiceBase
from pattern_trace import trace


class TickService(ServiceBase):
    _svc_name_ = "shc1base"
    _svc_display_name_ = "servicehost pattern: base class"
    _svc_description_ = "ticks until it is stopped"

    def start(self):
        trace(self._svc_name_, "start")
        self.running = True

    def stop(self):
        trace(self._svc_name_, "stop")
        self.running = False

    def main(self):
        trace(self._svc_name_, "main")
        while self.running:
            time.sleep(0.05)
        trace(self._svc_name_, "main-end")


if __name__ == "__main__":
    TickService.parse_command_line()
