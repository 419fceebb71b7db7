"""``servicehost jobs NAME|TARGET|URL stats|list|dead|requeue ID|submit JSON|migrate``: a service's
durable intake from the command line. ``cli.commands()`` joins :data:`COMMANDS` to the others.

Which store: the URL when one is given in place of NAME (``servicehost jobs sqlite:////var/lib/app/jobs.sqlite3
stats``, as producers name it to ``open_store``), or ``--store URL``; else the service's own ``store`` setting (a TARGET's
settings, with its config file and ``SERVICEHOST_STORE``); else what the installed service NAME
was given (``--store`` in the command its manager launches, or ``SERVICEHOST_STORE`` in its
environment); else the embedded default, :func:`default_url` of its state directory
(``<state_dir>/jobs.sqlite3``: the directory ``servicehost settings`` names). A URL is shown
redacted, never with its password.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path
from typing import Any

from ..arguments import NAME_TARGET_OR_URL, Command, Invocation, is_url, number, one_line, service_name, text
from ..errors import ExitCode, UsageError

#: The file of the embedded store in a service's state directory.
STORE_FILE = "jobs.sqlite3"


def default_url(state_dir: str | Path) -> str:
    """The embedded store of a service whose state is in ``state_dir``: ``sqlite:///<state_dir>/jobs.sqlite3``
    (an absolute directory gives the four slashes of an absolute SQLite path)."""
    return f"sqlite:///{Path(state_dir) / STORE_FILE}"


ACTIONS = ("stats", "list", "dead", "requeue", "submit", "migrate")


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=ACTIONS, metavar="ACTION",
                   help="stats (ready, running, delayed, dead, oldest ready age) | list (live jobs) | dead (the "
                   "dead-letter table with each job's errors) | requeue ID (a dead job, ready again) | submit JSON | "
                   "migrate (create the store's schema, or bring it to this version's)")
    p.add_argument("value", nargs="?", default=None, metavar="ID|JSON", help="requeue: the job id; submit: the payload")
    p.add_argument("--name", type=service_name, help="service name (default: the class's name)")
    p.add_argument("--store", type=text, default=None, metavar="URL",
                   help="the store (default: the service's store setting, else jobs.sqlite3 in its state dir)")
    p.add_argument("--json", action="store_true", help="print JSON instead of lines")
    p.add_argument("--limit", type=number(int, min=1, max=1_000_000), default=100, metavar="N",
                   help="list/dead: at most N jobs")
    p.add_argument("--state", choices=("ready", "delayed", "running"), default=None, help="list: only these")
    p.add_argument("--key", type=text, default=None, help="submit: the job's key (jobs sharing one run in order)")
    p.add_argument("--idempotency-key", type=text, default=None, help="submit: a second submit with it adds nothing")
    p.add_argument("--priority", type=number(int, min=-(1 << 31), max=(1 << 31) - 1), default=0,
                   help="submit: higher runs first")
    p.add_argument("--delay", type=number(float, min=0, max=10 * 365 * 86400), default=0.0, metavar="SECONDS",
                   help="submit: not before SECONDS from now")


def store_url(inv: Invocation) -> str:
    """Which store ``jobs`` opens (see the module docstring)."""
    if inv.service_cls is None and not inv.name and is_url(inv.target):
        if inv.args.store and inv.args.store != inv.target:
            raise UsageError("jobs: the store is named twice, as the URL in place of NAME and by --store; give one")
        return inv.target
    if inv.args.store:
        return str(inv.args.store)
    own = getattr(inv.loaded.service, "store", None)
    if own:
        return str(own)
    if inv.name:
        given = _installed_store(inv.name)
        if given:
            return given
    return default_url(inv.loaded.host.state_dir)


def _installed_store(name: str) -> str | None:
    """``--store`` (else ``--state-dir``'s default) in the command the manager launches for
    ``name``, or ``SERVICEHOST_STORE`` in its environment; None when it is not installed."""
    from ..errors import ServiceHostError
    from ..manage import where_installed

    try:
        record = where_installed(name).record(name)
    except ServiceHostError:
        return None
    if record is None:
        return None
    command = list(record.command)
    for flag in ("--store",):
        if flag in command[:-1]:
            return command[command.index(flag) + 1]
    for key, value in record.options.environment:
        if key == "SERVICEHOST_STORE" and value:
            return value
    if "--state-dir" in command[:-1]:
        return default_url(command[command.index("--state-dir") + 1])
    return None


def _cmd_jobs(inv: Invocation) -> ExitCode:
    from .store import InvalidArgument, NoStoreYet, PayloadError, UnknownJob, open_store, parse_url

    a = inv.args
    if a.action in ("requeue", "submit") and a.value is None:
        raise UsageError(f"jobs {a.action}: expected {'a job id' if a.action == 'requeue' else 'a JSON payload'}")
    if a.action not in ("requeue", "submit") and a.value is not None:
        raise UsageError(f"jobs {a.action} takes no value (found {a.value[:40]!r})")
    url = store_url(inv)
    if a.action == "migrate":
        return _migrate(url, a.json)
    # A look must not create the store: made by root before the service's first run, the file
    # would be root's, and the service (running as its own account) could not open it.
    look = a.action in ("stats", "list", "dead", "requeue")
    try:
        opener = functools.partial(open_store, create=False) if look and parse_url(url).scheme == "sqlite" \
            else open_store
        return _jobs_action(a, url, opener)
    except NoStoreYet:
        return _nothing_stored(a, url)
    except (InvalidArgument, PayloadError, UnknownJob) as exc:
        # What the command line named is wrong (a key, the payload, the job, the --store URL): exit 2,
        # as for any bad option. The store itself (unavailable, full, a schema it cannot use): exit 1.
        raise UsageError(str(exc)) from None


def _nothing_stored(a: Any, url: str) -> ExitCode:
    """What ``stats``/``list``/``dead``/``requeue`` answer for a store file not made yet, making
    nothing: an empty store, said so."""
    from .store import redact

    shown = redact(url)
    if a.action == "requeue":
        raise UsageError(f"no dead job {a.value[:40]} in intake store {shown}: it holds no store yet (the file "
                         "does not exist: the service has stored nothing there)")
    if a.action == "stats":
        if a.json:
            print(json.dumps({"store": shown, "ready": 0, "running": 0, "delayed": 0, "dead": 0,
                              "oldest_ready_age": None, "exists": False}))
        else:
            print(f"store:       {shown} (no file yet: nothing stored)\nready:       0\nrunning:     0\n"
                  f"delayed:     0\ndead:        0\noldest ready age: -")
    elif a.json:
        print("[]")
    return ExitCode.OK


def _jobs_action(a: Any, url: str, open_store: Any) -> ExitCode:
    with open_store(url) as store:
        if a.action == "stats":
            s = store.stats()
            doc: Any = {"store": store.url, **s._asdict()}
            if a.json:
                print(json.dumps(doc))
            else:
                age = "-" if s.oldest_ready_age is None else f"{s.oldest_ready_age:.1f}s"
                print(f"store:       {store.url}\nready:       {s.ready}\nrunning:     {s.running}\n"
                      f"delayed:     {s.delayed}\ndead:        {s.dead}\noldest ready age: {age}")
        elif a.action == "list":
            jobs = store.jobs(a.state, a.limit)
            if a.json:
                print(json.dumps([_plain(j._asdict()) for j in jobs]))
            for j in jobs if not a.json else ():
                print(f"{j.id}\t{j.state}\tattempts={j.attempts}\tkey={_text(j.key)}\tpriority={j.priority}\t"
                      f"age={time.time() - j.submitted_at:.1f}s\t{_short(j.payload)}")
        elif a.action == "dead":
            dead = store.dead(a.limit)
            if a.json:
                print(json.dumps([_plain({**d._asdict(), "errors": [e._asdict() for e in d.errors]}) for d in dead]))
            for d in dead if not a.json else ():
                print(f"{d.id}\tattempts={d.attempts}\tkey={_text(d.key)}\t{_short(d.payload)}")
                for e in d.errors:
                    print(f"    attempt {e.attempt}: {_text(e.error)}")
        elif a.action == "requeue":
            try:
                job_id = int(a.value)
            except ValueError:
                raise UsageError(f"jobs requeue: expected a job id (an integer), found {a.value[:40]!r}") from None
            store.requeue(job_id)
            print(f"requeued job {job_id}")
        else:
            try:
                payload = json.loads(a.value)
            except ValueError as exc:
                raise UsageError(f"jobs submit: the payload is not JSON: {exc}") from None
            job_id = store.submit(payload, key=a.key, idempotency_key=a.idempotency_key, priority=a.priority,
                                  run_at=time.time() + a.delay if a.delay else None)
            print(job_id)
    return ExitCode.OK


def _migrate(url: str, as_json: bool) -> ExitCode:
    """Create or migrate the store's schema explicitly; say what was found and what was done."""
    from .store import migrate_store, redact

    before, now = migrate_store(url)
    did = "nothing to do" if before == now else ("created" if before == 0 else f"migrated from v{before}")
    if as_json:
        print(json.dumps({"store": redact(url), "found": before, "now": now, "did": did}))
    else:
        found = "none" if before == 0 else f"v{before}"
        print(f"store:        {redact(url)}\nschema found: {found}\nschema now:   v{now} ({did})")
    return ExitCode.OK


def _plain(doc: dict[str, Any]) -> dict[str, Any]:
    """JSON-safe: a bytes payload shown as its hex."""
    return {k: (v.hex() if isinstance(v, bytes) else v) for k, v in doc.items()}


def _text(text: str | None) -> str:
    """A key or an error as a line shows it: producers and handlers chose that text, so a control
    character in it (a newline, a terminal escape) is shown escaped, never acted on by the
    terminal or taken for a line of its own."""
    return "-" if not text else one_line(text)


def _short(payload: Any, limit: int = 120) -> str:
    shown = f"bytes:{payload[:32].hex()}" if isinstance(payload, bytes) else json.dumps(payload)
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


COMMANDS: tuple[Command, ...] = (
    Command("jobs", "the service's durable intake: stats | list | dead | requeue ID | submit JSON | migrate", _cmd_jobs,
            _args,
            settings=("manager",), operand=NAME_TARGET_OR_URL),
)
