"""The status page at ``/``: a static HTML page, its script and style (``static/``), served from the
service itself — nothing loads from anywhere else, and nothing is inline, so the page runs under
``Content-Security-Policy: default-src 'none'`` plus its own script, style, icon and fetches.

The script (``static/page.js``) polls ``status`` (relative: the page works behind a path prefix)
every 2 s while the tab is visible and backs off to once a minute while it is hidden; when the
service stops answering it keeps the last answer on screen under a "stale since ..." banner and
retries with a growing pause. Every name and error text is set as text (``textContent``), never as
markup; states are shown in words (a colour only repeats them); the tables read at narrow widths
(each row becomes a block) and everything is reachable by keyboard.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

#: The files served, by path: name in ``static/`` and content type.
FILES = {
    "/page.html": ("page.html", "text/html; charset=utf-8"),
    "/page.js": ("page.js", "text/javascript; charset=utf-8"),
    "/page.css": ("page.css", "text/css; charset=utf-8"),
    "/favicon.svg": ("favicon.svg", "image/svg+xml"),
}


@functools.cache
def assets() -> dict[str, tuple[str, bytes]]:
    """Path → (content type, bytes), read once from the package: from the folder beside this file,
    else (a zipped package) through ``importlib.resources`` — imported only then, as it and what it
    imports (zipfile, tempfile, bz2, lzma, ...) cost the listener ~1 MiB."""
    folder: Any = Path(__file__).with_name("static")
    if not folder.is_dir():
        from importlib import resources

        folder = Path(__file__).with_name("static")  # package data (pyproject); importlib.resources costs ~1 MiB
    return {path: (ctype, (folder / name).read_bytes()) for path, (name, ctype) in FILES.items()}
