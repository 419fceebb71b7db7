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
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from .errors import ConfigError, UsageError

ENV_PREFIX = "SERVICEHOST_"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def setting(
    default: Any,
    doc: str,
    *,
    min: float | None = None,
    max: float | None = None,
    choices: Iterable[str] | None = None,
    unit: str = "",
) -> Any:
    """Declare one setting: a dataclass field carrying its doc and limits."""
    return field(
        default=default,
        metadata={"doc": doc, "min": min, "max": max, "choices": tuple(choices or ()), "unit": unit},
    )


@dataclass(frozen=True)
class SettingSpec:
    """One declared setting, read back from its dataclass field."""

    name: str
    type: type
    default: Any
    doc: str
    min: float | None
    max: float | None
    choices: tuple[str, ...]
    owner: type

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


@functools.cache
def specs(cls: type) -> list[SettingSpec]:
    """The settings a frozen dataclass declares, in declaration order (computed once per class)."""
    hints = get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if kind not in (bool, int, float, str, Path):
            raise TypeError(f"{cls.__name__}.{f.name}: settings must be bool, int, float, str or Path, not {kind}")
        md = f.metadata
        out.append(
            SettingSpec(f.name, kind, f.default, md.get("doc", ""), md.get("min"), md.get("max"),
                        tuple(md.get("choices", ())), cls)
        )
    return out


def convert(spec: SettingSpec, raw: Any, source: str, key: str | None = None) -> Any:
    """Turn a raw value (a string from env/CLI, or a TOML value) into the setting's type; validate.

    ``key`` is how the source spells the setting (a flag, a variable); default: its name.
    """

    def bad() -> ConfigError:
        return ConfigError(source, key or spec.name, spec.expected, repr(raw))

    if isinstance(raw, str) and spec.type is not str and spec.type is not Path:
        text = raw.strip().lower()
        if spec.type is bool:
            if text in _TRUE:
                value: Any = True
            elif text in _FALSE:
                value = False
            else:
                raise bad()
        else:
            try:
                value = spec.type(text)
            except ValueError:
                raise bad() from None
    elif spec.type is bool:
        if not isinstance(raw, bool):
            raise bad()
        value = raw
    elif spec.type is float:
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise bad()
        value = float(raw)
    elif spec.type is int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise bad()
        value = raw
    elif spec.type is Path:
        if not isinstance(raw, (str, Path)):
            raise bad()
        value = Path(raw)
    else:
        if not isinstance(raw, str):
            raise bad()
        value = raw
    if spec.type in (int, float):
        if value != value or value in (float("inf"), float("-inf")):  # NaN, infinities
            raise bad()
        if (spec.min is not None and value < spec.min) or (spec.max is not None and value > spec.max):
            raise bad()
    if spec.choices and value not in spec.choices:
        raise bad()
    if spec.type is str and "\x00" in value:
        raise bad()
    return value


@dataclass(frozen=True, kw_only=True)
class HostConfig:
    """The framework's own settings (a service adds its own through ``Service.Settings``)."""

    shutdown_timeout: float = setting(
        30.0, "seconds a graceful stop may take before the host stops being graceful", min=0, max=86400, unit="s")
    start_timeout: float = setting(
        60.0, "seconds every service has to become ready before the start counts as failed", min=0.1, max=86400, unit="s")
    hang_timeout: float = setting(
        300.0, "a worker running one task longer than this is hung (0: never)", min=0, max=86400, unit="s")
    hang_policy: str = setting(
        "restart", "what a hung worker does: restart (exit 5, the manager restarts) or report (log only)",
        choices=("restart", "report"))
    log_level: str = setting(
        "INFO", "lowest level logged", choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"))
    log_file: str = setting(
        "", "rotating log file; empty: <state_dir>/logs/<service>.log; 'none': no file")
    syslog: bool = setting(False, "also log to the local syslog (/dev/log)")
    state_dir: Path = setting(
        Path(""), "where the service keeps its state; empty: $STATE_DIRECTORY, else a per-user default")
    manager: str = setting(
        "auto", "service manager to run under: auto (detect), or a platform name (servicehost managers)")


def default_state_dir(service_name: str, env: Mapping[str, str]) -> Path:
    """$STATE_DIRECTORY (systemd), else /var/lib/servicehost/NAME for root, else the XDG state dir."""
    if env.get("STATE_DIRECTORY"):
        return Path(env["STATE_DIRECTORY"].split(":")[0])
    if sys.platform == "win32":
        return Path(env.get("PROGRAMDATA", r"C:\ProgramData")) / "servicehost" / service_name
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/servicehost") / service_name
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "servicehost" / service_name


@dataclass(frozen=True)
class Loaded:
    """The result of :func:`load`: the host's settings, the service's, and where they came from."""

    host: HostConfig
    service: Any
    sources: tuple[str, ...]


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
    source = f"config file {path}"
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(source, None, "a readable TOML file", "no such file") from None
    except OSError as exc:
        raise ConfigError(source, None, "a readable TOML file", exc.strerror or exc) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, None, "valid TOML", f"a syntax error ({exc})") from None
    except UnicodeDecodeError:
        raise ConfigError(source, None, "UTF-8 TOML", "bytes that are not UTF-8") from None


def load(
    *,
    service_name: str,
    service_settings: type | None = None,
    config_file: Path | None = None,
    env: Mapping[str, str] | None = None,
    cli: Mapping[str, str] | None = None,
) -> Loaded:
    """Build both settings objects: defaults < TOML < environment < CLI.

    ``cli`` maps setting names to the raw strings given on the command line.
    """
    env = os.environ if env is None else env
    table = all_specs(service_settings)
    by_name = {s.name: s for s in table}
    values: dict[str, Any] = {}
    sources = ["defaults"]

    if config_file is not None:
        data = read_toml(config_file)
        source = f"config file {config_file}"
        for key, raw in data.items():
            spec = by_name.get(key)
            if spec is None:
                import difflib  # only on this error path

                hint = difflib.get_close_matches(key, by_name, 1)
                raise ConfigError(
                    source, key, "a known setting" + (f" (did you mean {hint[0]}?)" if hint else
                                                      f" ({', '.join(sorted(by_name))})"),
                    "an unknown key")
            values[key] = convert(spec, raw, source)
        sources.append(source)

    env_used = False
    for spec in table:
        if spec.env in env:
            values[spec.name] = convert(spec, env[spec.env], "environment", spec.env)
            env_used = True
    if env_used:
        sources.append("environment")

    for key, raw in (cli or {}).items():
        spec = by_name.get(key)
        if spec is None:
            raise ConfigError("command line", "--" + key.replace("_", "-"), "a known option", "an unknown option")
        values[key] = convert(spec, raw, "command line", spec.flag)
    if cli:
        sources.append("command line")

    host_values = {k: v for k, v in values.items() if by_name[k].owner is HostConfig}
    if not str(host_values.get("state_dir", "")) or str(host_values.get("state_dir")) == ".":
        host_values["state_dir"] = default_state_dir(service_name, env)
    try:
        host_values["state_dir"] = Path(host_values["state_dir"]).expanduser().absolute()
    except RuntimeError:  # "~someone" naming no user
        raise ConfigError("settings", "state_dir", "a path (~ only for an existing user)",
                          repr(str(host_values["state_dir"]))) from None
    host = HostConfig(**host_values)
    service = None
    if service_settings is not None:
        service = service_settings(**{k: v for k, v in values.items() if by_name[k].owner is service_settings})
    return Loaded(host, service, tuple(sources))


def settings_table(service_settings: type | None = None) -> str:
    """The docs table of every setting (generated, so it can never drift)."""
    rows = ["| setting | env | flag | default | meaning |", "|---|---|---|---|---|"]
    for s in all_specs(service_settings):
        shown = "*(empty)*" if str(s.default) in ("", ".") else f"`{s.default}`"
        rows.append(f"| `{s.name}` | `{s.env}` | `{s.flag}` | {shown} | {s.doc} |")
    return "\n".join(rows)
