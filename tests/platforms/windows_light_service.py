"""A service that imports nothing but servicehost, for the Windows start-path tests: ``start()``
writes the modules loaded by then and those its start cache served (``<state_dir>/modules.json``),
so a test sees what the service process imported on its way to RUNNING (a target file, not tests)."""

from __future__ import annotations

import json
import sys

from servicehost import Service, StopToken

EDITION = 1  # a test changes this in a copy of this file: which code ran


class Light(Service):
    name = "Light"

    def start(self) -> None:
        from servicehost._startcache import current

        cache = current()
        seen = {"modules": sorted(sys.modules), "served": None if cache is None else sorted(cache.served),
                "edition": EDITION}
        (self.state_dir / "modules.json").write_text(json.dumps(seen), encoding="utf-8")

    def run(self, stop: StopToken) -> None:
        stop.wait()
