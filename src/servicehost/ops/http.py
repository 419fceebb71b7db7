"""The optional HTTP listener (setting ``http``): probes, metrics, the status document, the page.

    GET /livez     200 while alive: no worker hung past hang_timeout, the host has not failed, every
                   ``live`` check passes; never a dependency (``health.py``). 503 otherwise
    GET /readyz    200 only when the host is RUNNING and every ``ready`` check passes; 503 while
                   starting, paused, draining, stopping. ``?verbose``: one ``[+]``/``[-]`` line per
                   check (Kubernetes' form); ``?exclude=NAME`` leaves a check out
    GET /metrics   the Prometheus text format (``ops/metrics.py``: ``render(host) -> bytes``)
    GET /status    the status document (``ops/status.py``, as ``servicehost status --json`` gets it
                   on the control channel) plus ``accepting`` (what /readyz's state line says) and
                   each health check's latest result (never waited for: a stale one is refreshed
                   in the background), as JSON
    GET /          the status page (``page.py``): it polls ``status`` and shows it

Read only: GET and HEAD; any other method is 405, a request with a body is refused. No setting
or config value is served (so no secret is). Every answer says ``Cache-Control: no-store`` and
carries a Content-Security-Policy (``default-src 'none'``; the page adds only its own script,
style, icon and ``connect-src 'self'``), ``X-Frame-Options: DENY``, ``nosniff`` and no referrer.

DNS rebinding: a page on ``evil.test`` whose name an attacker points at 127.0.0.1 makes the
browser send ``Host: evil.test``. Only a ``Host`` that is ``localhost``, an IP literal (a browser
that sent one connected to that address itself), or a name in ``http_allowed_hosts`` (``*``: any)
is answered; any other gets 403.

Bounds: the listener is an :class:`~servicehost.workers.EventServer` (not one of the services'
components: it is not drained, paused or counted with them) — one selector thread reads every
client without blocking, so an idle client or one sending a byte at a time holds no thread (it is
closed after ``read_timeout``/``idle_timeout``, the longest-idle first when ``max_connections``
are open); complete requests run on a few handler threads; a request head is at most 8 KiB. It
binds 127.0.0.1 unless the address says otherwise (a non-loopback one is logged as a warning).

Started by ``cli._run`` before the host starts (so a probe sees "starting") and closed after the
host stopped (so it sees "stopping"): :func:`serving`. Nothing imports this module unless the
setting is given: ``import servicehost`` never does.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .. import logs
from ..errors import ConfigError
from ..host import Host
from ..stopping import Deadline
from ..workers.event_server import EventServer, FrameTooLong
from . import health, page

log = logging.getLogger("servicehost.ops")

MAX_HEAD = 8192
"""Longest request head (request line and headers) in bytes; a longer one closes the connection."""
MAX_BODY = 65536
"""Longest body a request may announce; it is read and thrown away (nothing here takes a body)."""
MAX_LOGGED_HOSTS = 64
"""Refused Host names logged (each once); more are refused without a log line."""
CLOSE_WITHIN = 2.0
"""Seconds the listener has to answer what it has read when it closes."""

#: The Content-Security-Policy of every answer but the page: nothing may load from it.
CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
#: The page's: its own script, style and icon, and fetches to itself; nothing inline, nothing else.
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
            "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
_COMMON = (("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff"), ("X-Frame-Options", "DENY"),
           ("Referrer-Policy", "no-referrer"))
_REASONS = {200: "OK", 204: "No Content", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
            405: "Method Not Allowed", 500: "Internal Server Error", 503: "Service Unavailable"}
TEXT = "text/plain; charset=utf-8"
JSON = "application/json"
METRICS = "text/plain; version=0.0.4; charset=utf-8"


def parse_address(text: str) -> tuple[str, int]:
    """``PORT`` (on 127.0.0.1), ``HOST:PORT`` or ``[IPv6]:PORT`` → (host, port); ConfigError else.
    Port 0 takes a free port (the log says which)."""
    text = text.strip()
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", text
    elif host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        host = "?"  # an IPv6 address without brackets: its last part is not a port
    if not (port.isascii() and port.isdigit() and int(port) <= 65535) or not host or any(c in host for c in "[]/ ?#@"):
        raise ConfigError("settings", "http", "PORT, HOST:PORT or [IPv6]:PORT (e.g. 127.0.0.1:9100)", text)
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def allowed_hosts(text: str | Sequence[str]) -> frozenset[str]:
    """The ``http_allowed_hosts`` setting as a set of lower-case names (comma or space separated)."""
    items = text.replace(",", " ").split() if isinstance(text, str) else list(text)
    return frozenset(item.strip().lower().rstrip(".") for item in items if item.strip())


def host_allowed(header: str | None, allowed: frozenset[str]) -> bool:
    """Whether a request's ``Host`` header may be answered (the module docstring: DNS rebinding).
    No header (HTTP/1.0) is a client that did not go through a name: allowed."""
    if header is None:  # HTTP/1.0 (an HTTP/1.1 request without one is a 400)
        return True
    name = header.strip().lower()
    if name.startswith("["):  # [v6]:port
        name = name[1:name.find("]")] if "]" in name else ""
    elif name.count(":") == 1:
        name = name.rsplit(":", 1)[0]
    name = name.rstrip(".")
    if not name:
        return False
    if "*" in allowed or name in allowed or name == "localhost":
        return True
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


class HttpFraming:
    """HTTP/1.x requests cut out of a connection's bytes (the EventServer's framing): a head up to
    the blank line, at most :data:`MAX_HEAD` bytes, then the body its Content-Length announces (at
    most :data:`MAX_BODY`). A chunked body, or a head or body too long, closes the connection."""

    def split(self, buffer: bytearray, limit: int) -> list[bytes]:
        out: list[bytes] = []
        while len(out) < limit:
            end = buffer.find(b"\r\n\r\n", 0, MAX_HEAD + 4)
            if end < 0:
                if not out and len(buffer) > MAX_HEAD:
                    raise FrameTooLong(f"request head longer than {MAX_HEAD} bytes")
                break
            head = bytes(buffer[:end])
            try:
                body = _body_length(head)
            except FrameTooLong:
                if out:
                    break  # the requests before it are served first
                raise
            if len(buffer) < end + 4 + body:
                break  # the body is still arriving (read_timeout bounds how long)
            out.append(head)
            del buffer[:end + 4 + body]
        return out

    def encode(self, reply: bytes) -> bytes:
        return reply


def _body_length(head: bytes) -> int:
    length = 0
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        key = key.strip().lower()
        if key == b"transfer-encoding":
            raise FrameTooLong("a chunked request body (nothing here takes a body)")
        if key == b"content-length":
            value = value.strip()
            if not value.isdigit() or int(value) > MAX_BODY:
                raise FrameTooLong(f"Content-Length {value[:20]!r}: at most {MAX_BODY} bytes")
            length = int(value)
    return length


class Request:
    """One parsed request head."""

    __slots__ = ("method", "target", "path", "query", "version", "headers")

    def __init__(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise ValueError("not an HTTP/1.x request line")
        self.method, self.target, self.version = parts
        url = urlsplit(self.target)
        self.path = url.path
        self.query = parse_qs(url.query, keep_blank_values=True)
        self.headers: dict[str, str] = {}
        for line in lines[1:]:
            key, sep, value = line.partition(":")
            if not sep or not key or key != key.strip():
                raise ValueError("a malformed header line")
            key = key.lower()
            if key == "host" and key in self.headers:
                raise ValueError("two Host headers")
            self.headers[key] = value.strip()


class HttpApp:
    """The handler: one request head in, one whole response out (any handler thread)."""

    def __init__(self, host: Host, allowed: frozenset[str] = frozenset()) -> None:
        self.host = host
        self.allowed = allowed
        self.began = time.monotonic()
        self.refused: set[str | None] = set()  # Host names refused and logged (at most MAX_LOGGED_HOSTS)
        self.assets = page.assets()
        self.routes = {"/livez": self.livez, "/readyz": self.readyz, "/status": self.status,
                       "/metrics": self.metrics}

    def __call__(self, head: bytes, peer: Any) -> bytes:
        try:
            request = Request(head)
        except (ValueError, UnicodeDecodeError):
            return response(400, b"bad request\n", close=True)
        keep = _keep_alive(request)
        name = request.headers.get("host")
        if name is None and request.version != "HTTP/1.0":
            return response(400, b"an HTTP/1.1 request needs a Host header\n", close=True)
        if not host_allowed(name, self.allowed):
            if name not in self.refused and len(self.refused) < MAX_LOGGED_HOSTS:  # once per name: no log flood
                self.refused.add(name)
                logs.http_refused(log, request.method, request.path[:200], _peer(peer),
                                  f"Host {(name or '')[:100]!r} is not allowed (http_allowed_hosts); not logged again")
            return response(403, b"Host header not allowed\n", close=not keep)
        if request.method not in ("GET", "HEAD"):
            return response(405, b"read only: GET and HEAD\n", extra=(("Allow", "GET, HEAD"),), close=not keep)
        try:
            status, ctype, body, extra = self.answer(request)
        except Exception as exc:
            logs.http_failed(log, request.method, request.path[:200], exc_info=exc)
            status, ctype, body, extra = 500, TEXT, b"internal error (see the service's log)\n", ()
        return response(status, body, ctype, extra=extra, head_only=request.method == "HEAD", close=not keep)

    def answer(self, request: Request) -> tuple[int, str, bytes, tuple[tuple[str, str], ...]]:
        route = self.routes.get(request.path)
        if route is not None:
            return route(request)
        asset = self.assets.get("/page.html" if request.path == "/" else request.path)
        if asset is not None:
            ctype, body = asset
            return 200, ctype, body, (("Content-Security-Policy", PAGE_CSP),) if ctype.startswith("text/html") else ()
        if request.path == "/favicon.ico":
            return 204, TEXT, b"", ()
        return 404, TEXT, b"not found: try /, /livez, /readyz, /metrics, /status\n", ()

    def _probe(self, verdict: health.Verdict, request: Request) -> tuple[int, str, bytes, tuple[tuple[str, str], ...]]:
        verbose = "verbose" in request.query
        return (200 if verdict.passes else 503), TEXT, verdict.text(verbose).encode(), ()

    def livez(self, request: Request) -> tuple[int, str, bytes, tuple[tuple[str, str], ...]]:
        return self._probe(health.liveness(self.host, request.query.get("exclude", ())), request)

    def readyz(self, request: Request) -> tuple[int, str, bytes, tuple[tuple[str, str], ...]]:
        return self._probe(health.readiness(self.host, request.query.get("exclude", ())), request)

    def status(self, request: Request) -> tuple[int, str, bytes, tuple[tuple[str, str], ...]]:
        from .status import service_status

        document = service_status(self.host, uptime=time.monotonic() - self.began)
        document["accepting"] = self.host.state is health.READY_STATE  # what /readyz's state line says
        document["checks"] = [_check_json(check) for check in health.checks(self.host)]
        return 200, JSON, json.dumps(document, ensure_ascii=True, allow_nan=False, default=str).encode(), ()

    def metrics(self, request: Request) -> tuple[int, str, bytes, tuple[tuple[str, str], ...]]:
        try:
            from . import metrics
        except ImportError:  # not part of this build
            return 404, TEXT, b"metrics are not available in this build\n", ()
        return 200, METRICS, metrics.render(self.host), ()


def _check_json(check: health.HealthCheck) -> dict[str, Any]:
    """A check's latest result, never waited for (a stale one is refreshed in the background)."""
    last = check.refresh()
    if last is not None:
        return last.as_json()
    return {"name": check.name, "health": None, "detail": "running for the first time", "at": None,
            "duration": None, "tags": list(check.tags)}


def _keep_alive(request: Request) -> bool:
    connection = request.headers.get("connection", "").lower()
    if request.version == "HTTP/1.0":
        return "keep-alive" in connection
    return "close" not in connection


def _peer(peer: Any) -> str:
    try:
        return f"{peer[0]}:{peer[1]}"
    except (TypeError, IndexError):
        return str(peer)


def response(status: int, body: bytes, ctype: str = TEXT, *, extra: Sequence[tuple[str, str]] = (),
             head_only: bool = False, close: bool = False) -> bytes:
    """A whole HTTP/1.1 response: status line, the common headers, ``extra``, the body."""
    headers = [("Content-Type", ctype), ("Content-Length", str(len(body))), *_COMMON]
    if not any(k == "Content-Security-Policy" for k, _ in extra):
        headers.append(("Content-Security-Policy", CSP))
    headers.extend(extra)
    if close:
        headers.append(("Connection", "close"))
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}", *(f"{k}: {v}" for k, v in headers), "", ""]
    return "\r\n".join(lines).encode("latin-1") + (b"" if head_only else body)


class HttpListener:
    """The listener of one host: ``start()`` binds (BindError, exit 3, names the address),
    ``close()`` answers what it read and closes. See the module docstring."""

    def __init__(self, host: Host, address: str, allowed: str | Sequence[str] = "") -> None:
        self.bind_host, self.bind_port = parse_address(address)
        self.app = HttpApp(host, allowed_hosts(allowed))
        self.server = EventServer(
            self.app, self.bind_host, self.bind_port, name="http", workers=4, queue_size=32,
            max_connections=64, max_pipelined=4, framing=HttpFraming(), idle_timeout=30.0, read_timeout=10.0)

    @property
    def address(self) -> tuple[str, int]:
        return self.server.address

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/"

    def start(self) -> HttpListener:
        self.server.start()
        where = self.url[len("http://"):-1]
        logs.http_listening(log, where)
        if not is_loopback(self.address[0]):
            logs.http_not_loopback(log, where)
        return self

    def close(self) -> None:
        self.server.close()
        self.server.drain(Deadline.after(CLOSE_WITHIN))
        logs.http_closed(log, self.url)


@contextmanager
def serving(host: Host, address: str, allowed: str | Sequence[str] = "") -> Iterator[HttpListener]:
    """Serve ``host`` on ``address`` while the block runs (``cli._run`` wraps the whole run in it)."""
    listener = HttpListener(host, address, allowed).start()
    try:
        yield listener
    finally:
        listener.close()

