"""Settings: each declared once, as a field of a frozen dataclass, with its type, default,
one-line doc and limits. The TOML key, the ``SERVICEHOST_*`` environment variable and the CLI
flag are all derived from the field name:

    shutdown_timeout  →  TOML ``shutdown_timeout = 30``, ``SERVICEHOST_SHUTDOWN_TIMEOUT=30``,
                         ``--shutdown-timeout 30``

Precedence, lowest to highest: defaults < TOML file < environment < command line.
A user's service declares its own settings the same way (``Service.Settings``) and they share
one flat namespace with the host's (a clash is a programming error, reported at load).
Bad input raises :class:`~servicehost.errors.ConfigError` naming source, key, expected, found.
Unknown ``SERVICEHOST_*`` environment variables are ignored (as most tools do); unknown TOML
keys and flags are errors.

Validation is strict and happens in one place, :func:`convert`, for every source: TOML values
must have the setting's TOML type (``workers = "4"`` is refused), text from the environment and
the command line must be ASCII digits for numbers, strings and paths may not hold control
characters, paths must fit the OS limits, and a setting declared ``path="dir"``/``"file"`` must
be usable as one (:func:`check_path`). The config file is read bounded (:func:`read_toml`).

A closed set of values is a :class:`~enum.StrEnum` (``hang_policy: HangPolicy``): its values are
the choices, spelled as the enum's values in TOML, the environment, flags and docs (and taken in
any case: ``--log-level debug``), and the loaded setting is the enum member.
"""

from __future__ import annotations

import builtins
import dataclasses
import functools
import os
import re
import stat
import sys
from collections.abc import Iterable, Mapping
from dataclasses import field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_type_hints

from .errors import ConfigError, UsageError

if TYPE_CHECKING:  # the same records to a type checker (``_records.py``)
    from dataclasses import dataclass as record
    from typing import NamedTuple
else:
    from ._records import NamedTuple, record

ENV_PREFIX = "SERVICEHOST_"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_INT_TEXT = r"[+-]?[0-9]+"  # re.fullmatch caches the compiled form: nothing to compile at import
_FLOAT_TEXT = r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?"
MAX_CONFIG_BYTES = 1024 * 1024
"""A config file larger than this is refused (a settings file is a few hundred bytes)."""
NAME_MAX = 255
"""Longest file name (one path component, in bytes) the supported file systems accept."""
PATH_MAX = 4096
"""Longest path (in bytes) Linux accepts in one system call."""
_SHOWN = 200  # longest found value shown in an error (then: its length)


def setting(
    default: Any,
    doc: str,
    *,
    min: float | None = None,
    max: float | None = None,
    choices: Iterable[str] | None = None,
    unit: str = "",
    path: str | None = None,
) -> Any:
    """Declare one setting: a dataclass field carrying its doc and limits.

    A setting annotated with a ``StrEnum`` takes one of its values (``choices`` is the enum's).

    ``path="dir"`` or ``path="file"``: a non-empty value (other than ``none`` for a str setting)
    names a directory / a regular file that must be usable as one: if it exists it has that
    kind, and the nearest existing parent is a directory (:func:`check_path`).
    """
    if path not in (None, "dir", "file"):
        raise TypeError(f"setting(path=...) is 'dir' or 'file', not {path!r}")
    return field(
        default=default,
        metadata={"doc": doc, "min": min, "max": max, "choices": tuple(choices or ()), "unit": unit,
                  "path": path},
    )


class SettingSpec(NamedTuple):
    """One declared setting, read back from its dataclass field. (A NamedTuple, not a dataclass:
    the records on the start path are cheap to define — see bench/run.py's start target.)"""

    name: str
    type: type
    default: Any
    doc: str
    min: float | None
    max: float | None
    choices: tuple[str, ...]
    owner: builtins.type  # (the field ``type`` hides the builtin in this class body)
    path: str | None = None
    """'dir' or 'file' when the value names one (see :func:`setting`)."""
    enum: builtins.type[StrEnum] | None = None
    """The setting's closed set, when it is annotated with one: ``type`` is then ``str``,
    ``choices`` are the enum's values and the loaded value is the member."""

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def expected(self) -> str:
        if self.choices:
            return "one of " + ", ".join(self.choices)
        what = {bool: "true or false", int: "an integer", float: "a number", str: "a string", Path: "a path"}[self.type]
        if self.min is not None and self.max is not None:
            what += f" from {self.min:g} to {self.max:g}"
        elif self.min is not None:
            what += f" >= {self.min:g}"
        elif self.max is not None:
            what += f" <= {self.max:g}"
        return what


def _simple_hints(cls: type) -> dict[str, Any] | None:
    """``get_type_hints(cls)`` when every annotation is one name (``float``, ``Path``, ``HangPolicy``:
    the usual settings), looked up where it would look (the module, the class, builtins) without
    compiling each; None when one is anything else (then ``get_type_hints`` reads them)."""
    hints: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        annotations = klass.__dict__.get("__annotations__", {})
        if not isinstance(annotations, dict):
            return None
        module = getattr(sys.modules.get(klass.__module__), "__dict__", {})
        for name, value in annotations.items():
            if not isinstance(value, str):
                return None
            for namespace in (module, klass.__dict__, builtins.__dict__):
                if value in namespace:
                    hints[name] = namespace[value]
                    break
            else:
                return None  # not a plain name (or not found): get_type_hints says which
            if not isinstance(hints[name], type):
                return None
    return hints


@functools.cache
def specs(cls: type) -> list[SettingSpec]:
    """The settings a frozen dataclass declares, in declaration order (computed once per class)."""
    name = getattr(cls, "__qualname__", repr(cls))
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise UsageError(f"{name}: settings are declared as a @dataclass(frozen=True, kw_only=True) class")
    try:
        hints = _simple_hints(cls) or get_type_hints(cls)
    except Exception as exc:  # an annotation naming something that does not exist
        raise UsageError(f"{name}: its annotations cannot be resolved ({exc.__class__.__name__}: {exc})") from None
    out = []
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        enum = kind if isinstance(kind, type) and issubclass(kind, StrEnum) else None
        if enum is None and kind not in (bool, int, float, str, Path):
            raise UsageError(f"{name}.{f.name}: settings must be bool, int, float, str or Path "
                             f"(or a StrEnum for a closed set), not {kind}")
        if f.default is dataclasses.MISSING:
            raise UsageError(f"{name}.{f.name}: a setting needs a default: declare it with setting(default, doc)")
        md = f.metadata
        choices = tuple(md.get("choices", ()))
        if enum is not None:
            if choices:
                raise UsageError(f"{name}.{f.name}: a {enum.__name__} setting's choices are its members; "
                                 "leave choices= out")
            if not isinstance(f.default, enum):
                raise UsageError(f"{name}.{f.name}: its default {f.default!r} is not a {enum.__name__} member")
            kind, choices = str, tuple(member.value for member in enum)
        out.append(
            SettingSpec(f.name, kind, f.default, md.get("doc", ""), md.get("min"), md.get("max"),
                        choices, cls, md.get("path"), enum)
        )
    return out


def shown(raw: Any) -> str:
    """How a found value is shown in an error: short, one line (a table or array by its kind)."""
    if isinstance(raw, dict):
        return "a table"
    if isinstance(raw, list):
        return "an array"
    text = repr(raw)
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "...' (" + f"{len(str(raw))} characters)"


def text_problem(text: str) -> str | None:
    """What makes a string unusable as a setting value (control characters, or bytes that are not
    UTF-8), or None."""
    problem = _control_problem(text)
    if problem is None and not text.isascii():
        for c in text:
            if "\ud800" <= c <= "\udfff":  # how Python holds an argument's or a variable's undecodable byte
                return (f"a byte that is not UTF-8 ({c!r}): a name or a text a manager keeps must be UTF-8 "
                        "(is the terminal's or the file's encoding UTF-8?)")
    return problem


def _control_problem(text: str) -> str | None:
    """A control character in ``text``, said; None when there is none."""
    for c in text:
        if c < " " or c == "\x7f" or "\x80" <= c <= "\x9f":
            return f"a control character {c!r}"
    return None


def text_number(text: str, kind: type) -> int | float | None:
    """``text`` as an int or a float if it is one in ASCII digits (no NaN, no infinities), else None."""
    if not re.fullmatch(_INT_TEXT if kind is int else _FLOAT_TEXT, text):
        return None
    try:
        value = kind(text)
    except ValueError:  # more digits than int() converts
        return None
    return None if value in (float("inf"), float("-inf")) else value


def path_problem(text: str) -> str | None:
    """What makes ``text`` unusable as a path on this OS (before touching the file system). A
    name the file system keeps as bytes that are not UTF-8 is a path still (POSIX)."""
    problem = _control_problem(text)
    if problem:
        return problem
    try:
        data = os.fsencode(text)
    except UnicodeError:
        return "characters the file system cannot encode"
    if len(data) > PATH_MAX:
        return f"a path of {len(data)} bytes (at most {PATH_MAX})"
    longest = max(data.replace(b"\\", b"/").split(b"/"), key=len)
    if len(longest) > NAME_MAX:
        return f"a name of {len(longest)} bytes (at most {NAME_MAX} in one path component)"
    return None


def convert(spec: SettingSpec, raw: Any, source: str, key: str | None = None, *, typed: bool = False) -> Any:
    """Turn a raw value into the setting's type; validate it. The one place values are coerced.

    ``typed``: the value comes from a typed source (TOML): it must already have the setting's
    type; a string is parsed only when it comes from text (the environment, the command line).
    ``key`` is how the source spells the setting (a flag, a variable); default: its name.
    """

    def bad(found: str | None = None) -> ConfigError:
        return ConfigError(source, key or spec.name, spec.expected, found or shown(raw))

    value: Any
    if isinstance(raw, str) and spec.type not in (str, Path):
        if typed:  # TOML says what it means: "4" is a string, 4 a number
            try:
                if len(raw) > _SHOWN:
                    raise bad()
                as_text = convert(spec, raw, source, key)
                fix = f"{spec.name} = {str(as_text).lower() if spec.type is bool else raw}"
            except ConfigError:
                fix = f"{spec.name} = {'true' if spec.type is bool else spec.default}"
            raise bad(f"the string {shown(raw)} (write it without quotes: {fix})")
        if spec.type is bool:
            text = raw.lower() if raw.isascii() else raw
            if text in _TRUE:
                value = True
            elif text in _FALSE:
                value = False
            else:
                raise bad()
        else:
            value = text_number(raw, spec.type)
            if value is None:
                raise bad()
    elif spec.type is bool:
        if not isinstance(raw, bool):
            raise bad()
        value = raw
    elif spec.type is float:
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise bad()
        try:
            value = float(raw)
        except OverflowError:  # an int too large for a float
            raise bad() from None
    elif spec.type is int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise bad()
        value = raw
    elif spec.type is Path:
        if not isinstance(raw, (str, Path)) or (typed and not isinstance(raw, str)):
            raise bad()
        problem = path_problem(str(raw))
        if problem:
            raise bad(f"{shown(str(raw))}: {problem}")
        value = Path(raw)
    else:
        if not isinstance(raw, str):
            raise bad()
        problem = text_problem(raw)
        if problem:
            raise bad(f"{shown(raw)}: {problem}")
        if spec.path and raw.lower() != "none":
            problem = path_problem(raw)
            if problem:
                raise bad(f"{shown(raw)}: {problem}")
        value = raw
    if spec.type in (int, float):
        if value != value or value in (float("inf"), float("-inf")):  # NaN, infinities
            raise bad()
        if (spec.min is not None and value < spec.min) or (spec.max is not None and value > spec.max):
            raise bad()
    if spec.choices and value not in spec.choices:
        value = choice_of(value, spec.choices)
        if value is None:
            raise bad()
    return value if spec.enum is None else spec.enum(value)


def choice_of(text: str, choices: Iterable[str]) -> str | None:
    """The one of ``choices`` that ``text`` spells in any (ASCII) case, as ``choices`` spell it
    (``debug`` → ``DEBUG``); None when it is none of them."""
    if not text.isascii():
        return None
    folded = text.lower()
    return next((c for c in choices if c.lower() == folded), None)


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISREG, "a file"), (stat.S_ISFIFO, "a FIFO"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def file_kind(mode: int) -> str:
    """'a directory', 'a file', 'a FIFO', ... for an ``st_mode``."""
    return next((name for test, name in _KINDS if test(mode)), "a special file")


def check_path(spec: SettingSpec, value: Any, source: str, key: str | None = None) -> None:
    """A ``path="dir"``/``"file"`` setting's value must be usable as one (ConfigError otherwise):
    if it exists, it has that kind; if not, its nearest existing parent is a directory that this
    user can reach. Whether it is writable is left to the service (it may run as another user)."""
    if spec.path is None or str(value) in ("", ".") or str(value).lower() == "none" and spec.type is str:
        return
    want = "a directory" if spec.path == "dir" else "a regular file"
    path = Path(os.path.expanduser(str(value)))

    def bad(found: str) -> ConfigError:
        return ConfigError(source, key or spec.name, want, f"{shown(str(value))}: {found}")

    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        pass
    except OSError as exc:
        raise bad(exc.strerror or str(exc)) from None
    else:
        is_dir = stat.S_ISDIR(mode)
        if spec.path == "dir" and not is_dir or spec.path == "file" and not stat.S_ISREG(mode):
            raise bad(f"{file_kind(mode)}" + (" (give a file name, or 'none' for no file)" if is_dir else ""))
        return
    parent = path.absolute().parent
    while True:
        try:
            mode = os.stat(parent).st_mode
        except (FileNotFoundError, NotADirectoryError):
            if parent == parent.parent:
                return
            parent = parent.parent
            continue
        except OSError as exc:
            raise bad(f"{parent}: {exc.strerror or exc}") from None
        if not stat.S_ISDIR(mode):
            raise bad(f"{shown(str(parent))} is {file_kind(mode)}, not a directory")
        return


_SECRET_PARTS = frozenset({"PASSWORD", "PASSWD", "PASSPHRASE", "SECRET", "SECRETS", "TOKEN", "TOKENS", "APIKEY",
                           "CREDENTIAL", "CREDENTIALS", "PRIVATEKEY"})
_SECRET_PAIRS = frozenset({("API", "KEY"), ("PRIVATE", "KEY"), ("ACCESS", "KEY"), ("SECRET", "KEY"), ("AUTH", "KEY")})


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (``postgresql://u:***@h/db``); safe to log.
    Query options named like secrets (password, secret, token, key) are redacted too. (The intake's
    stores call it ``redact``.)"""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    cut = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    colon, at = rest.find(":"), rest.rfind("@")
    if "@" not in rest[:cut] and 0 <= colon < at and not {"/", "@"} & set(rest[:colon]):
        # A password with a raw / ? or # in it (not percent-encoded, as a URL wants): the authority
        # reaches to the last @. Masking too much shows less; masking too little would show it.
        cut = rest.find("/", at) if rest.find("/", at) >= 0 else len(rest)
    netloc, tail = rest[:cut], rest[cut:]
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        if ":" in userinfo:
            netloc = f"{userinfo.split(':', 1)[0]}:***@{host}"
    path, qmark, query = tail.partition("?")
    if qmark:
        query, hash_, fragment = query.partition("#")
        pairs = []
        for pair in query.split("&"):
            name, eq, _value = pair.partition("=")
            secret = any(s in name.lower() for s in ("pass", "secret", "token", "key"))
            pairs.append(f"{name}=***" if eq and secret else pair)
        tail = f"{path}?{'&'.join(pairs)}{hash_}{fragment}"
    return f"{scheme}://{netloc}{tail}"


def redact_urls(text: str) -> str:
    """``text`` with every URL in it redacted (:func:`redact_url`): a setting's value, an operand, an
    error message, as shown to anyone."""
    if "://" not in text:
        return text
    return re.sub(r"[A-Za-z][A-Za-z0-9+.-]*://\S+", lambda m: redact_url(m.group(0)), text)


def holds_url_secret(text: str) -> bool:
    """Whether ``text`` holds a URL with a password (or a secret-named query option) in it."""
    return redact_urls(text) != text


def looks_secret(name: str) -> bool:
    """True for names like DB_PASSWORD, GITHUB_TOKEN, api-key, AWS_SECRET_ACCESS_KEY: a value of
    that name is never written where others read it (a unit file, ``config``'s answer)."""
    from itertools import pairwise

    parts = [p for p in re.split(r"[^A-Za-z0-9]+", name.upper()) if p]
    return any(p in _SECRET_PARTS for p in parts) or any(pair in _SECRET_PAIRS for pair in pairwise(parts))


class HangPolicy(StrEnum):
    """What a hung worker does (setting ``hang_policy``)."""

    RESTART = "restart"
    """Exit with code 5 (HUNG): the manager restarts the service."""
    REPORT = "report"
    """Log it and keep running."""


class LogLevel(StrEnum):
    """The lowest level logged (setting ``log_level``): the ``logging`` level names."""

    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"
    CRITICAL = "CRITICAL"


@record(frozen=True, kw_only=True)
class HostConfig:
    """The framework's own settings (a service adds its own through ``Service.Settings``)."""

    shutdown_timeout: float = setting(
        30.0, "seconds a graceful stop may take before the host stops being graceful", min=0, max=86400, unit="s")
    start_timeout: float = setting(
        60.0, "seconds every service has to become ready before the start counts as failed", min=0.1, max=86400, unit="s")
    hang_timeout: float = setting(
        300.0, "a worker running one task longer than this is hung (0: never)", min=0, max=86400, unit="s")
    hang_policy: HangPolicy = setting(
        HangPolicy.RESTART,
        "what a hung worker does: restart (exit 5, the manager restarts) or report (log only)")
    log_level: LogLevel = setting(LogLevel.INFO, "lowest level logged")
    log_file: str = setting(
        "", "rotating log file; empty: $LOGS_DIRECTORY/<name>.log, else <state_dir>/logs/<name>.log; "
        "'none': no file", path="file")
    syslog: bool = setting(False, "also log to the local syslog (/dev/log)")
    state_dir: Path = setting(
        Path(""), "where the service keeps its state; empty: $STATE_DIRECTORY, else a per-user default "
        "named after the service (--name, else its class)", path="dir")
    manager: str = setting(
        "auto", "service manager to run under: auto (detect), or a platform name (servicehost managers)")
    control_group: str = setting(
        "", "a group whose members may read the running service on its control channel (status, threads, "
        "config), but not change it; a group name (or gid on Linux); empty: only root/Administrators and the "
        "service's own account")
    http: str = setting(
        "", "serve probes (/livez, /readyz), /metrics, /status and a status page over HTTP on PORT, HOST:PORT "
        "or [IPv6]:PORT (a bare PORT: 127.0.0.1); empty: no listener")
    http_allowed_hosts: str = setting(
        "", "host names the HTTP listener answers besides localhost and IP addresses (comma-separated; "
        "'*': any), e.g. the name a proxy or Prometheus uses; any other Host header is refused (DNS rebinding)")

    def __init__(self, *, shutdown_timeout: float = 30.0, start_timeout: float = 60.0, hang_timeout: float = 300.0,
                 hang_policy: HangPolicy = HangPolicy.RESTART, log_level: LogLevel = LogLevel.INFO,
                 log_file: str = "", syslog: bool = False, state_dir: Path = Path(""), manager: str = "auto",
                 control_group: str = "", http: str = "", http_allowed_hosts: str = "") -> None:
        # What @dataclass(frozen=True, kw_only=True) generates, written out (``_records.py``): a new
        # setting goes here too, with the default its setting() gives (tests/unit/test_frozen_records.py).
        self.__dict__.update(
            shutdown_timeout=shutdown_timeout, start_timeout=start_timeout, hang_timeout=hang_timeout,
            hang_policy=hang_policy, log_level=log_level, log_file=log_file, syslog=syslog, state_dir=state_dir,
            manager=manager, control_group=control_group, http=http, http_allowed_hosts=http_allowed_hosts)
        self.__post_init__()

    def __post_init__(self) -> None:
        # HostConfig(hang_policy="report") written in code holds the member too, as a loaded one does
        for spec in specs(HostConfig):
            if spec.enum is not None:
                object.__setattr__(self, spec.name, spec.enum(getattr(self, spec.name)))


def default_state_dir(service_name: str, env: Mapping[str, str]) -> Path:
    """Where service ``service_name`` keeps its state when ``state_dir`` is empty:
    $STATE_DIRECTORY (systemd's StateDirectory=), else ``servicehost/NAME`` under
    %ProgramData% (Windows), /var/lib (root) or the XDG state dir ($XDG_STATE_HOME, else
    ~/.local/state). NAME is the installed name (``--name``), else the class's: two installs of one
    class never share a directory, and a foreground run shares one only when given that name."""
    if env.get("STATE_DIRECTORY"):
        return Path(env["STATE_DIRECTORY"].split(":")[0])
    if sys.platform == "win32":
        return Path(env.get("PROGRAMDATA", r"C:\ProgramData")) / "servicehost" / service_name
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/servicehost") / service_name
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "servicehost" / service_name


def default_log_file(service_name: str, state_dir: Path, env: Mapping[str, str]) -> Path:
    """The log file of service ``service_name`` when ``log_file`` is empty: in $LOGS_DIRECTORY
    (systemd's LogsDirectory=), else in ``<state_dir>/logs``; named ``NAME.log``."""
    logs_directory = env.get("LOGS_DIRECTORY", "").split(":")[0]
    return (Path(logs_directory) if logs_directory else state_dir / "logs") / f"{service_name}.log"


class Loaded(NamedTuple):
    """The result of :func:`load`: the host's settings, the service's, and where they came from."""

    host: HostConfig
    service: Any
    sources: tuple[str, ...]
    origins: Mapping[str, str] = {}
    """Per setting name, where its value came from: ``default``, ``config file PATH``,
    ``environment SERVICEHOST_X``, ``command line --x``, or how an empty value was filled in."""


def all_specs(service_settings: type | None) -> list[SettingSpec]:
    """Host settings then the service's; a name declared by both is a programming error."""
    out = list(specs(HostConfig))
    if service_settings is not None:
        taken = {s.name for s in out}
        for spec in specs(service_settings):
            if spec.name in taken:
                raise UsageError(
                    f"{service_settings.__name__}.{spec.name} clashes with the host setting of that name; rename it")
            out.append(spec)
    return out


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML settings file, bounded: only a regular file (opened without blocking, so a
    FIFO or a device is refused, never waited on), at most :data:`MAX_CONFIG_BYTES`, UTF-8,
    valid TOML of any nesting (too deep is an error, not a crash). ConfigError otherwise."""
    source = f"config file {path}"

    def bad(expected: str, found: object) -> ConfigError:
        return ConfigError(source, None, expected, found)

    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise bad("a readable TOML file", "no such file") from None
    except OSError as exc:
        raise bad("a readable TOML file", exc.strerror or exc) from None
    except ValueError:  # a NUL byte in the name
        raise bad("a file name", "a NUL byte in it") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise bad("a regular TOML file", file_kind(mode))
        chunks, size = [], 0
        while size <= MAX_CONFIG_BYTES:
            chunk = os.read(fd, MAX_CONFIG_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise bad("a readable TOML file", exc.strerror or exc) from None
    finally:
        os.close(fd)
    if size > MAX_CONFIG_BYTES:
        raise bad(f"a TOML file of at most {MAX_CONFIG_BYTES // 1024} KiB", "a larger file")
    data = b"".join(chunks)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise bad("UTF-8 TOML", f"bytes that are not UTF-8 (at byte {exc.start})") from None
    import tomllib  # only when there is a file to read: not a start cost for every service

    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise bad("valid TOML", f"a syntax error ({exc})") from None
    except RecursionError:
        raise bad("valid TOML nested at most a few hundred levels", "deeper nesting") from None
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        raise bad("valid TOML", f"a value it cannot hold ({exc})") from None


def load(
    *,
    service_name: str,
    service_settings: type | None = None,
    config_file: Path | None = None,
    env: Mapping[str, str] | None = None,
    cli: Mapping[str, str] | None = None,
) -> Loaded:
    """Build both settings objects: defaults < TOML < environment < CLI.

    ``service_name`` names the default state dir (the installed name, else the class's).
    ``cli`` maps setting names to the raw strings given on the command line.
    """
    env = os.environ if env is None else env
    table = all_specs(service_settings)
    by_name = {s.name: s for s in table}
    values: dict[str, Any] = {}
    origin: dict[str, tuple[str, str]] = {}  # name -> (source, how the source spells it)
    sources = ["defaults"]

    if config_file is not None:
        data = read_toml(config_file)
        source = f"config file {config_file}"
        for key, raw in data.items():
            spec = by_name.get(key)
            if spec is None:
                import difflib  # only on this error path

                hint = difflib.get_close_matches(key, by_name, 1)
                known = f" (did you mean {hint[0]}?)" if hint else f" ({', '.join(sorted(by_name))})"
                raise ConfigError(
                    source, key if len(key) <= _SHOWN else key[:_SHOWN] + "...", "a known setting" + known,
                    "an unknown key")
            values[key] = convert(spec, raw, source, typed=True)
            origin[key] = (source, key)
        sources.append(source)

    env_used = False
    for spec in table:
        if spec.env in env:
            values[spec.name] = convert(spec, env[spec.env], "environment", spec.env)
            origin[spec.name] = ("environment", spec.env)
            env_used = True
    if env_used:
        sources.append("environment")

    for key, raw in (cli or {}).items():
        spec = by_name.get(key)
        if spec is None:
            raise ConfigError("command line", "--" + key.replace("_", "-"), "a known option", "an unknown option")
        values[key] = convert(spec, raw, "command line", spec.flag)
        origin[key] = ("command line", spec.flag)
    if cli:
        sources.append("command line")

    host_values = {k: v for k, v in values.items() if by_name[k].owner is HostConfig}
    if not str(host_values.get("state_dir", "")) or str(host_values.get("state_dir")) == ".":
        host_values["state_dir"] = default_state_dir(service_name, env)
        origin["state_dir"] = ("$STATE_DIRECTORY" if env.get("STATE_DIRECTORY") else
                               f"the default for {service_name}", "state_dir")
    try:
        host_values["state_dir"] = Path(host_values["state_dir"]).expanduser().absolute()
    except RuntimeError:  # "~someone" naming no user
        source, key = origin.get("state_dir", ("settings", "state_dir"))
        raise ConfigError(source, key, "a path (~ only for an existing user)",
                          shown(str(host_values["state_dir"]))) from None
    except OSError as exc:  # the working directory is gone
        raise ConfigError("settings", "state_dir", "an absolute path, or a working directory that exists",
                          exc.strerror or exc) from None
    values["state_dir"] = host_values["state_dir"]
    for spec in table:
        if spec.path and spec.name in values:
            source, key = origin.get(spec.name, ("defaults", spec.name))
            check_path(spec, values[spec.name], source, key)
    host = HostConfig(**host_values)
    service = None
    if service_settings is not None:
        service = service_settings(**{k: v for k, v in values.items() if by_name[k].owner is service_settings})
    origins = {}
    for spec in table:
        source, key = origin.get(spec.name, ("default", spec.name))
        origins[spec.name] = f"{source} {key}" if source in ("environment", "command line") else source
    return Loaded(host, service, tuple(sources), origins)


def shown_default(spec: SettingSpec) -> str:
    """A setting's default as help shows it: ``(empty)`` for an empty text or path (``Path("")``
    would print as ``.``)."""
    return "(empty)" if str(spec.default) in ("", ".") and spec.type in (str, Path) else str(spec.default)


def settings_table(service_settings: type | None = None) -> str:
    """The docs table of every setting (generated, so it can never drift)."""
    rows = ["| setting | env | flag | default | meaning |", "|---|---|---|---|---|"]
    for s in all_specs(service_settings):
        default = shown_default(s)
        shown = "*(empty)*" if default == "(empty)" else f"`{default}`"
        rows.append(f"| `{s.name}` | `{s.env}` | `{s.flag}` | {shown} | {s.doc} |")
    return "\n".join(rows)
