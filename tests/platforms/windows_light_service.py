"""A service that imports nothing but servicehost, for the Windows start-path test: ``start()``
writes the modules loaded by then (``<state_dir>/modules.json``), so a test sees what the service
process imported on its way to RUNNING (a target file, not tests)."""

from __future__ import annotations

import json
import sys

from servicehost import Service, StopToken


class Light(Service):
    name = "Light"

    def start(self) -> None:
        (self.state_dir / "modules.json").write_text(json.dumps(sorted(sys.modules)), encoding="utf-8")

    def run(self, stop: StopToken) -> None:
        stop.wait()
