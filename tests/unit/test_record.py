"""The install record (platforms/record.py) and how a manager command tells an installed
service's NAME from a TARGET (arguments.is_target, cli.parse). Pure functions: no manager here;
the real managers read the record back in tests/platforms/test_manager_contract.py and
test_by_name.py."""

from __future__ import annotations

import json
import sys

import pytest

from servicehost.arguments import is_target
from servicehost.cli import class_target, parse
from servicehost.errors import ConfigError, UsageError
from servicehost.platforms.base import InstallOptions, StartMode, launch_command
from servicehost.platforms.record import InstallRecord, split_command, updated, with_copies

from .test_cli import ALPHA

PYTHON = "/opt/venv/bin/python"


def record(**options: object) -> InstallRecord:
    command = launch_command("/srv/app/svc.py:Svc", state_dir="/var/lib/servicehost/svc", interpreter=PYTHON)
    values = {"name": "svc", "environment": (("A", "1"), ("B", "2")), "state_dir": "/var/lib/servicehost/svc",
              **options}
    return InstallRecord(InstallOptions(**values), tuple(command + ["--log-level", "DEBUG"]))  # type: ignore[arg-type]


def lines(changes: list) -> list[str]:
    return [change.line() for change in changes]


# -- the record itself ---------------------------------------------------------------------------------
def test_a_record_is_one_ascii_line_that_reads_back_the_same():
    original = record(display_name="Dépôt ✓", description="a\nb", dependencies=("db", "net"),
                      start_mode="manual", watchdog=2.5, restart=False)
    text = original.to_json()
    assert "\n" not in text and text.isascii()  # safe in a unit comment, an ini comment, a registry string
    assert InstallRecord.from_json(text, "here") == original
    assert json.loads(text)["version"] == 1 and original.options.start_mode is StartMode.MANUAL


def test_a_record_tells_its_target_and_interpreter():
    assert record().target == "/srv/app/svc.py:Svc" and record().interpreter == PYTHON
    ported = InstallRecord(InstallOptions(name="p"), (PYTHON, "/srv/app/ported.py", "run"))  # compat's install
    assert ported.target == "/srv/app/ported.py"


def test_a_newer_record_is_read_for_what_this_version_knows():
    data = json.loads(record().to_json())
    data["options"]["a_later_option"] = 1
    data["a_later_key"] = {}
    assert InstallRecord.from_json(json.dumps(data), "here") == record()


@pytest.mark.parametrize("text", ["", "{", "[]", '{"options": {}}', '{"options": {"name": "x"}, "command": []}',
                                  '{"options": {"name": "x", "start_mode": "sometimes"}, "command": ["p"]}',
                                  '{"options": 3, "command": ["p"]}'])
def test_a_damaged_record_is_one_line_naming_where_it_is(text):
    with pytest.raises(ConfigError) as caught:
        InstallRecord.from_json(text, "/usr/local/lib/systemd/system/svc.service")
    assert str(caught.value).startswith("/usr/local/lib/systemd/system/svc.service: record: expected a servicehost "
                                        "install record")


def test_a_command_splits_into_its_head_and_its_setting_flags():
    head, flags = split_command(record().command)
    assert head == [PYTHON, "-m", "servicehost", "run", "/srv/app/svc.py:Svc"]
    assert flags == [["--state-dir", "/var/lib/servicehost/svc"], ["--log-level", "DEBUG"]]
    odd = (PYTHON, "-m", "servicehost", "run", "t.py", "--flag")  # not servicehost's form: kept whole
    assert split_command(odd) == (list(odd), [])


# -- update: only what is given changes ---------------------------------------------------------------
def test_nothing_given_changes_nothing():
    assert updated(record()) == (record(), [])


def test_options_given_replace_theirs_and_the_rest_is_kept():
    new, changes = updated(record(dependencies=("db",)), options={"start_mode": "manual", "dependencies": ()})
    assert new.options == record(start_mode="manual").options and new.command == record().command
    assert lines(changes) == ["changed: --start: auto -> manual", "changed: --depends: db -> (none)"]


def test_env_is_merged_by_name_an_empty_value_removes_it_and_no_value_is_shown():
    new, changes = updated(record(), environment=[("A", ""), ("C", "secret-3"), ("B", "2"), ("GONE", "")])
    assert new.options.environment == (("B", "2"), ("C", "secret-3"))
    assert lines(changes) == ["changed: --env A: set -> (removed)", "changed: --env C: (none) -> set"]
    _, changes = updated(record(), environment=[("B", "other")])
    assert lines(changes) == ["changed: --env B: set -> set to a new value"]
    assert "secret" not in " ".join(lines(changes)) and "other" not in " ".join(lines(changes))


def test_settings_given_go_into_the_command_and_their_options():
    new, changes = updated(record(), settings={"log_level": "INFO", "shutdown_timeout": "12", "manager": "systemd",
                                               "hang_policy": "report"})
    assert new.command[-6:] == ("--log-level", "INFO", "--shutdown-timeout", "12", "--hang-policy", "report")
    assert "--manager" not in new.command and new.options.stop_timeout == 12
    assert lines(changes) == ["changed: --shutdown-timeout: 30 -> 12", "changed: --log-level: DEBUG -> INFO",
                              "changed: --hang-policy: (default) -> report"]


def test_a_new_state_dir_or_config_is_made_absolute_in_both_places(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    new, changes = updated(record(), settings={"state_dir": "state"}, options={"config_file": "svc.toml"})
    assert new.options.state_dir == str(tmp_path / "state") and new.options.config_file == str(tmp_path / "svc.toml")
    head, flags = split_command(new.command)
    assert dict(map(tuple, flags))["--state-dir"] == str(tmp_path / "state")
    assert dict(map(tuple, flags))["--config"] == str(tmp_path / "svc.toml")
    assert lines(changes) == [f"changed: --config: (none) -> {tmp_path / 'svc.toml'}",
                              f"changed: --state-dir: /var/lib/servicehost/svc -> {tmp_path / 'state'}"]


def test_the_watchdog_brings_its_hang_flags_and_takes_them_away():
    on, changes = updated(record(), options={"watchdog": 3.0})
    assert on.command[-4:] == ("--hang-timeout", "3", "--hang-policy", "restart")
    assert lines(changes)[0] == "changed: --watchdog: 0 -> 3"
    off, changes = updated(on, options={"watchdog": 0.0})
    assert off.command == record().command and off.options.watchdog == 0
    assert lines(changes) == ["changed: --watchdog: 3 -> 0", "changed: --hang-timeout: 3 -> (default)",
                              "changed: --hang-policy: restart -> (default)"]


def test_a_new_target_keeps_the_recorded_interpreter_and_settings(tmp_path):
    new, changes = updated(record(), target=str(tmp_path / "v2.py") + ":Svc")
    assert new.command[:5] == (PYTHON, "-m", "servicehost", "run", f"{tmp_path / 'v2.py'}:Svc")
    assert new.command[5:] == record().command[5:]
    assert lines(changes) == [f"changed: TARGET: /srv/app/svc.py:Svc -> {tmp_path / 'v2.py'}:Svc"]
    ported = InstallRecord(InstallOptions(name="p"), (PYTHON, "/srv/app/ported.py", "run"))
    new, _ = updated(ported, target="pkg.mod:P")
    assert new.command == (PYTHON, "-m", "servicehost", "run", "pkg.mod:P")


def test_update_refuses_what_it_cannot_change():
    with pytest.raises(UsageError, match="update cannot change name"):
        updated(record(), options={"name": "other"})


# -- NAME or TARGET -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("word", "target"), [
    ("dropfolder", False), ("drop-folder.svc", False), ("svc.py", True), ("pkg.mod:Svc", True),
    ("./svc", True), ("dir/svc", True), ("C:\\app\\svc", True), ("mysvc.pyc", True),
])
def test_a_word_with_py_a_colon_or_a_path_separator_is_a_target(word, target):
    assert is_target(word) is target


def test_a_name_is_not_imported_and_a_target_is(tmp_path):
    inv = parse(["status", "no_such_module_anywhere", "--manager", "foreground"])
    assert (inv.name, inv.target, inv.service_cls) == ("no_such_module_anywhere", "", None)
    inv = parse(["stop", ALPHA, "--manager", "foreground"])
    assert inv.name == "" and inv.service_cls is not None and inv.target == ALPHA
    inv = parse(["list", "--manager", "foreground"])
    assert (inv.name, inv.target, inv.service_cls) == ("", "", None)
    with pytest.raises(UsageError):  # install always takes a TARGET
        parse(["install", "no_such_module_anywhere", "--manager", "foreground"])


def test_a_class_of_the_running_script_is_recorded_by_its_file(monkeypatch, tmp_path):
    script = tmp_path / "my_service.py"
    main = type(sys)("__main__")
    main.__file__ = str(script)
    monkeypatch.setitem(sys.modules, "__main__", main)
    cls = type("MyService", (), {"__module__": "__main__"})
    assert class_target(cls) == f"{script}:MyService"
    assert class_target(InstallOptions) == "servicehost.platforms.base:InstallOptions"


# -- secrets in the record of a manager that keeps copies ----------------------------------------------
def test_a_secret_is_recorded_as_its_copy_never_the_file_it_came_from(tmp_path):
    options = InstallOptions(name="svc", environment=(("TOKEN", "@/etc/secret-source"), ("MODE", "@@fast"),
                                                      ("A", "b")))
    kept = with_copies(options, tmp_path / "copies")
    assert kept.environment == (("TOKEN", f"@{tmp_path / 'copies' / 'TOKEN'}"), ("MODE", "@@fast"), ("A", "b"))
    assert "secret-source" not in InstallRecord(kept, (PYTHON, "run")).to_json()
    assert with_copies(InstallOptions(name="svc"), tmp_path) == InstallOptions(name="svc")
