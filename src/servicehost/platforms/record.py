r"""What ``install`` records about a service, and how ``update`` changes it.

Every manager keeps an :class:`InstallRecord` where it keeps the service itself, so a later
command needs only the service's name (``servicehost start NAME``, from any directory):

    systemd       a ``# servicehost: record = {...}`` line in the unit file (``unit.py``)
    supervisord   a ``; servicehost: record = {...}`` line in the ``[program:NAME]`` file (``config.py``)
    the SCM       the ``InstallRecord`` value of the service key's ``Parameters`` (``service_config.py``)

The record is one line of JSON: the install options (:class:`~servicehost.platforms.base.InstallOptions`:
never a password, and a secret only as the path of its file) and the exact command the manager
launches: the interpreter, the TARGET (or the script of a ported pywin32 service), then the setting
flags (``--config``, ``--state-dir``, ``--log-level`` ...), each with its value.

:func:`updated` is ``update``: the recorded options with only the given ones changed (as
``sc config`` does), and the list of what changed. ``--env NAME=VALUE`` sets one variable and
``--env NAME=`` (empty) removes it; ``--depends SERVICE`` replaces the dependencies and
``--depends ""`` clears them; any other option given replaces its value.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from ..errors import ConfigError, UsageError
from .base import InstallOptions, launch_command, split_environment

#: The version of the record's JSON; a reader takes what it knows and ignores the rest.
RECORD_VERSION = 1
#: How a run command of ``servicehost`` itself starts: ``PYTHON -m servicehost run TARGET``.
_MODULE_RUN = ("-m", "servicehost", "run")
#: The setting flags the watchdog adds to the command (one hang policy: ``manage._launch``).
WATCHDOG_FLAGS = ("--hang-timeout", "--hang-policy")


class Change(NamedTuple):
    """One thing ``update`` changed, named as the option that changes it."""

    what: str
    before: str
    after: str

    def line(self) -> str:
        return f"changed: {self.what}: {self.before} -> {self.after}"


@dataclasses.dataclass(frozen=True)
class InstallRecord:
    """What a manager keeps about an installed service: its options and the command it launches."""

    options: InstallOptions
    command: tuple[str, ...]

    def to_json(self) -> str:
        """One line of ASCII JSON (safe in a unit-file comment, an ini comment, a registry string)."""
        fields = {f.name: getattr(self.options, f.name) for f in dataclasses.fields(InstallOptions)}
        fields["start_mode"] = str(fields["start_mode"])
        return json.dumps({"version": RECORD_VERSION, "options": fields, "command": list(self.command)},
                          ensure_ascii=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str, where: str) -> InstallRecord:
        """The record ``text`` holds; ConfigError naming ``where`` when it is not one."""
        expected = "a servicehost install record (one line of JSON)"
        try:
            data = json.loads(text)
            given = data["options"]
            known = {f.name for f in dataclasses.fields(InstallOptions)}
            values: dict[str, Any] = {k: v for k, v in given.items() if k in known}
            for key in ("dependencies",):
                values[key] = tuple(values.get(key, ()))
            values["environment"] = tuple((str(k), str(v)) for k, v in values.get("environment", ()))
            options = InstallOptions(**values)
            command = tuple(str(word) for word in data["command"])
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(where, "record", expected, f"{type(exc).__name__}: {str(exc)[:200]}") from None
        if not command:
            raise ConfigError(where, "record", expected, "an empty command")
        return cls(options, command)

    @property
    def target(self) -> str:
        """What the service runs: its TARGET, or the script of a ported pywin32 service."""
        head, _ = split_command(self.command)
        return head[len(_MODULE_RUN) + 1] if _is_module_run(head) else (head[1] if len(head) > 1 else head[0])

    @property
    def interpreter(self) -> str:
        return self.command[0]


def _is_module_run(words: Sequence[str]) -> bool:
    return tuple(words[1:1 + len(_MODULE_RUN)]) == _MODULE_RUN and len(words) > len(_MODULE_RUN) + 1


def split_command(command: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """(head, flags): the words up to the TARGET (``PYTHON -m servicehost run TARGET``) or up to
    ``run`` (``PYTHON script.py run``), and the ``--flag value`` pairs after them. Words that are
    not such pairs stay in the head: nothing of the command is ever lost."""
    words = list(command)
    if _is_module_run(words):
        end = len(_MODULE_RUN) + 2
    else:
        end = words.index("run") + 1 if "run" in words else len(words)
    head, rest = words[:end], words[end:]
    flags: list[list[str]] = []
    while len(rest) >= 2 and rest[0].startswith("--") and "=" not in rest[0]:
        flags.append([rest[0], rest[1]])
        rest = rest[2:]
    if rest:  # not the form servicehost writes: keep the whole command as it is
        return words, []
    return head, flags


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _shown(value: object) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value) or "(none)"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value) if value != "" else "(none)"


#: InstallOptions field → the option that sets it (what ``update`` prints as changed).
OPTION_FLAGS = {
    "display_name": "--display-name", "description": "--description", "start_mode": "--start",
    "dependencies": "--depends", "account": "--username", "working_directory": "--workdir",
    "stop_timeout": "--shutdown-timeout", "restart": "--restart", "restart_delay": "--restart-delay",
    "watchdog": "--watchdog", "config_file": "--config", "state_dir": "--state-dir",
}


def updated(record: InstallRecord, *, options: Mapping[str, Any] = {}, environment: Sequence[tuple[str, str]] = (),
            settings: Mapping[str, str] = {}, target: str = "") -> tuple[InstallRecord, list[Change]]:
    """``record`` with only what is given changed, and what changed (options first, then the
    environment, then the command).

    ``options``: InstallOptions fields given on the command line (``dependencies=()`` clears them;
    ``config_file`` is also the command's ``--config``); ``environment``: ``--env`` pairs, merged by
    name (an empty value removes the variable); ``settings``: setting flags given (raw values, as
    ``Invocation.cli_settings``), written into the command (``state_dir`` and
    ``shutdown_timeout`` also set their options); ``target``: a new TARGET (the interpreter stays
    the recorded one).
    """
    unknown = set(options) - set(OPTION_FLAGS)
    if unknown:
        raise UsageError(f"update cannot change {', '.join(sorted(unknown))}")
    before = record.options
    values = {f.name: getattr(before, f.name) for f in dataclasses.fields(InstallOptions)}
    values.update(options)

    env = dict(before.environment)
    env_changes: list[Change] = []
    for key, value in environment:  # values are never shown: a plain value may still be sensitive
        if value == "":
            if key in env:
                del env[key]
                env_changes.append(Change(f"--env {key}", "set", "(removed)"))
        elif key not in env:
            env[key] = value
            env_changes.append(Change(f"--env {key}", "(none)", "set"))
        elif env[key] != value:
            env[key] = value
            env_changes.append(Change(f"--env {key}", "set", "set to a new value"))
    values["environment"] = tuple(env.items())

    head, flags = split_command(record.command)
    if target:  # the same form as install writes, with the recorded interpreter
        head = launch_command(target, interpreter=head[0])
    flag_values = dict((flag, value) for flag, value in flags)
    for name, raw in settings.items():
        if name == "manager":
            continue  # chooses the manager to update; never part of the command (as at install)
        value = str(Path(raw).absolute()) if name == "state_dir" and raw else raw
        flag_values[_flag(name)] = value
        if name == "state_dir":
            values["state_dir"] = value
        elif name == "shutdown_timeout":
            values["stop_timeout"] = float(raw)
    if "config_file" in options:
        values["config_file"] = str(Path(options["config_file"]).absolute())
        flag_values["--config"] = values["config_file"]
    if "watchdog" in options and values["watchdog"]:  # one hang policy, as install writes it
        flag_values.update({WATCHDOG_FLAGS[0]: f"{values['watchdog']:g}", WATCHDOG_FLAGS[1]: "restart"})
    elif "watchdog" in options and before.watchdog:  # the watchdog's own flags go with it
        given = {_flag(name) for name in settings}
        for flag in WATCHDOG_FLAGS:
            if flag not in given:
                flag_values.pop(flag, None)
    after = InstallOptions(**values)
    command = tuple(head + [word for pair in flag_values.items() for word in pair])

    changes = [Change(OPTION_FLAGS[f.name], _shown(getattr(before, f.name)), _shown(getattr(after, f.name)))
               for f in dataclasses.fields(InstallOptions)
               if f.name in OPTION_FLAGS and getattr(before, f.name) != getattr(after, f.name)]
    changes += env_changes
    new_record = InstallRecord(after, command)
    if new_record.target != record.target:
        changes.append(Change("TARGET", record.target, new_record.target))
    old_flags = dict((flag, value) for flag, value in flags)
    for flag in dict.fromkeys([*old_flags, *flag_values]):
        if flag in _OPTION_MIRRORS or old_flags.get(flag) == flag_values.get(flag):
            continue  # an option shown above, or unchanged
        changes.append(Change(flag, old_flags.get(flag, "(default)"), flag_values.get(flag, "(default)")))
    return new_record, changes


def with_copies(options: InstallOptions, copies: Path) -> InstallOptions:
    """``options`` as a manager that keeps copies of the secrets (supervisord, the SCM) records
    them: each ``--env NAME=@file`` names its copy in ``copies`` instead of the file it came from,
    so the record says no more than the manager's config does (not even where a secret came from),
    and an update of anything else reads the copy again, whatever became of the file."""
    secrets = {secret.key for secret in split_environment(options.environment)[1]}
    environment = tuple((key, f"@{copies / key}" if key in secrets and value.startswith("@") else value)
                        for key, value in options.environment)
    return dataclasses.replace(options, environment=environment)


#: Command flags that carry an option: their change is shown once, as the option's.
_OPTION_MIRRORS = frozenset({"--config", "--state-dir", "--shutdown-timeout"})


__all__ = ["OPTION_FLAGS", "RECORD_VERSION", "WATCHDOG_FLAGS", "Change", "InstallRecord", "split_command", "updated",
           "with_copies"]
