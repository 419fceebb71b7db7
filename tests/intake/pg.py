"""A private, real PostgreSQL cluster for the tests and the bench (issue 15).

Never the machine's default cluster: ``initdb`` into a fresh temp directory, ``pg_ctl start`` with
its unix socket in that directory and a free TCP port on 127.0.0.1, the server's defaults otherwise
(fsync on, synchronous_commit on: real durability). As root the server runs as ``postgres``
(``runuser -u postgres --``; PostgreSQL refuses root) on a directory chowned to it.

Use in a test (the fixture is session-scoped: one cluster for the whole run)::

    def test_something(pg_cluster):
        url = pg_cluster.url(schema=pg_cluster.fresh_schema())      # a schema no test used yet
        url = pg_cluster.url(schema=..., listen=False)               # ...&listen=0: polling only
        secret = pg_cluster.url(tcp=True, password=True)            # TCP + the role's password
        pg_cluster.restart(mode="immediate")                        # or stop() / start()
        pg_cluster.sql("SELECT 1")                                  # as the superuser (psycopg)

``url()`` gives ``postgresql://servicehost@/servicehost?host=<socket dir>&port=<port>`` (trust on
the socket) plus ``schema=``/``listen=`` when asked; with ``tcp=True, password=True`` it gives
``postgresql://servicehost:<password>@127.0.0.1:<port>/servicehost`` (scram-sha-256 on TCP), for
the redaction tests: ``pg_cluster.password`` is the secret that must never show up.

Outside pytest (the bench): ``with Cluster.create() as c: ...`` (``Cluster.create(settings={...})``
passes ``-c name=value`` server settings, ``parent=`` where its directory goes). Without the
binaries a laptop skips with the reason
"postgresql binaries not found: apt-get install postgresql"; in CI (CI=true) that fails the run
(.ci/setup-postgres.sh installs them). ``PG_BINDIR`` picks a particular installation.
``start_node(tmp, url, *flags)`` runs a node (tests/intake/intake_service.py) on a store URL.
"""

from __future__ import annotations

import atexit
import glob
import itertools
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"
MISSING = "postgresql binaries not found: apt-get install postgresql"
ROLE = "servicehost"  # the role and database the tests use; the superuser is "postgres"
START_TIMEOUT = 120.0  # hang guard for pg_ctl (a start takes about a second)


def find_bindir() -> Path | None:
    """The directory holding initdb/pg_ctl/postgres: $PG_BINDIR, Debian's newest, or the PATH."""
    candidates = []
    if os.environ.get("PG_BINDIR"):
        candidates.append(os.environ["PG_BINDIR"])
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                      key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
                      reverse=True)
    candidates += versions
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(str(Path(on_path).resolve().parent))
    for c in candidates:
        d = Path(c)
        if all((d / b).is_file() and os.access(d / b, os.X_OK) for b in ("initdb", "pg_ctl", "postgres")):
            return d
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """One private cluster: its data, socket and log in ``base`` (removed by :meth:`destroy`)."""

    _schemas = itertools.count(1)

    def __init__(self, bindir: Path, base: Path, port: int, password: str,
                 settings: Mapping[str, str] | None = None) -> None:
        self.bindir = bindir
        self.base = base
        self.data = base / "data"
        self.sockdir = base / "sock"
        self.log = base / "server.log"
        self.port = port
        self.password = password
        self.settings = dict(settings or {})
        self.as_root = os.getuid() == 0
        self.running = False

    # -- creation -------------------------------------------------------------------------------

    @classmethod
    def create(cls, settings: Mapping[str, str] | None = None, parent: str | Path | None = None) -> Cluster:
        """initdb + start + the ``servicehost`` role (with a password) and database, in a new
        directory under ``parent`` (default: the temp dir). Raises :class:`FileNotFoundError`
        (with :data:`MISSING`) without the binaries."""
        bindir = find_bindir()
        if bindir is None:
            raise FileNotFoundError(MISSING)
        base = Path(tempfile.mkdtemp(prefix="servicehost-pg-", dir=parent))
        base.chmod(0o755)
        c = cls(bindir, base, _free_port(), "pw-" + secrets.token_hex(12), settings)
        atexit.register(c.destroy)
        try:
            c.sockdir.mkdir()
            if c.as_root:
                pw = pwd.getpwnam("postgres")
                for p in (base, c.sockdir):
                    os.chown(p, pw.pw_uid, pw.pw_gid)
            c._run("initdb", "-D", str(c.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                   "--no-locale", "--no-instructions")
            hba = c.data / "pg_hba.conf"
            # the socket trusts everyone (the tests' own processes); TCP asks for a password
            hba.write_text("local all all trust\n"
                           "host all postgres 127.0.0.1/32 trust\n"
                           "host all all 127.0.0.1/32 scram-sha-256\n")
            for i in itertools.count():
                try:
                    c.start()
                    break
                except RuntimeError:
                    if i >= 3 or "could not bind" not in c.log_tail():
                        raise
                    c.port = _free_port()  # someone took the port between the probe and the start
            from psycopg import sql

            c.sql(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(ROLE), sql.Literal(c.password)))
            c.sql(f"CREATE DATABASE {ROLE} OWNER {ROLE}")
        except BaseException:
            c.destroy()
            raise
        return c

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    # -- control --------------------------------------------------------------------------------

    def _run(self, tool: str, *args: str, timeout: float = START_TIMEOUT) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / tool), *args]
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self.base,
                           env={**os.environ, "LC_ALL": "C.UTF-8"})
        if r.returncode != 0:
            raise RuntimeError(f"{tool} failed ({r.returncode}): {r.stdout}{r.stderr}\n{self.log_tail()}")
        return r

    def options(self) -> str:
        opts = [f"-p {self.port}", f"-k {self.sockdir}", "-c listen_addresses=127.0.0.1",
                "-c max_connections=300"]
        opts += [f"-c {k}={v}" for k, v in self.settings.items()]
        return " ".join(opts)

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self._run("pg_ctl", "start", "-D", str(self.data), "-l", str(self.log), "-w",
                  "-t", str(int(START_TIMEOUT)), "-o", self.options())
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m fast|immediate|smart`` (immediate: no checkpoint, crash recovery at start)."""
        self._run("pg_ctl", "stop", "-D", str(self.data), "-m", mode, "-w", "-t", str(int(START_TIMEOUT)))
        self.running = False

    def restart(self, mode: str = "fast") -> None:
        """``pg_ctl restart -m mode``: every connection is cut; the server is back when this returns."""
        self._run("pg_ctl", "restart", "-D", str(self.data), "-m", mode, "-l", str(self.log), "-w",
                  "-t", str(int(START_TIMEOUT)), "-o", self.options())
        self.running = True

    def destroy(self) -> None:
        """Stop the server (if running) and remove its directory. Safe to call twice."""
        if self.running:
            try:
                self.stop("fast")
            except Exception:
                try:
                    self.stop("immediate")
                except Exception:
                    pass
        self.running = False
        shutil.rmtree(self.base, ignore_errors=True)

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    # -- use ------------------------------------------------------------------------------------

    def url(self, schema: str | None = None, listen: bool | None = None, *, tcp: bool = False,
            password: bool = False, user: str = ROLE, dbname: str = ROLE, **params: Any) -> str:
        """A store URL for the ``servicehost`` role (see the module docstring)."""
        query: dict[str, Any] = {}
        if tcp:
            auth = quote(user, safe="") + (":" + quote(self.password, safe="") if password else "")
            head = f"postgresql://{auth}@127.0.0.1:{self.port}/{dbname}"
        else:
            head = f"postgresql://{quote(user, safe='')}@/{dbname}"
            query.update(host=str(self.sockdir), port=self.port)
        if schema is not None:
            query["schema"] = schema
        if listen is not None:
            query["listen"] = 1 if listen else 0
        query.update(params)
        return head + ("?" + urlencode(query, safe="/") if query else "")

    def fresh_schema(self) -> str:
        """A schema name no one used yet in this cluster (not created: the store creates it)."""
        return f"t{os.getpid()}_{next(self._schemas)}"

    def conninfo(self, user: str = "postgres", dbname: str = ROLE) -> str:
        """A libpq conninfo over the socket (no password needed): for psycopg.connect()."""
        return f"host={self.sockdir} port={self.port} user={user} dbname={dbname}"

    def sql(self, query: Any, params: Any = None, dbname: str = "postgres",
            user: str = "postgres") -> list[tuple[Any, ...]]:
        """Run one statement as the superuser (or ``user``), autocommit; its rows ([] when none)."""
        import psycopg

        with psycopg.connect(self.conninfo(user=user, dbname=dbname), autocommit=True, connect_timeout=30) as conn:
            cur = conn.execute(query, params)  # type: ignore[arg-type]
            return list(cur.fetchall()) if cur.description else []

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until a connection succeeds (a hang guard, not a speed assertion)."""
        import psycopg

        end = time.monotonic() + timeout
        while True:
            try:
                self.sql("SELECT 1")
                return
            except psycopg.OperationalError:
                if time.monotonic() > end:
                    raise
                time.sleep(0.1)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """The session's private cluster (see the module docstring); skips on a laptop without
    PostgreSQL, fails in CI."""
    try:
        cluster = Cluster.create()
    except FileNotFoundError as e:
        if IN_CI:
            pytest.fail(str(e))
        pytest.skip(str(e))
    try:
        yield cluster
    finally:
        cluster.destroy()


def start_node(tmp: Path, url: str, *flags: str, ready: bool = True, **env: str) -> Any:
    """``servicehost run intake_service.py`` on the PostgreSQL store ``url`` (a node), recording its
    handler runs into ``tmp/record`` (read them with intakes.runs/by_job); ``env`` is added to its
    environment (e.g. ``PGPASSWORD=``: a password never goes on a command line)."""
    from ..integration.proc import ServiceProcess
    from .intakes import SERVICE

    svc = ServiceProcess("run", SERVICE, "--store", url, "--record", str(tmp / "record"),
                         "--state-dir", str(tmp / f"state-{secrets.token_hex(4)}"), "--log-file", "none", *flags,
                         **env)
    if ready:
        svc.ready()
    return svc
