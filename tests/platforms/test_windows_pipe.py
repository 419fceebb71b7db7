"""The control channel under the Windows SCM: the named pipe (``windows/control_pipe.py``), with
real parts — a service installed and started by Wine's real Service Control Manager, asked through
``servicehost status``/``threads``/``loglevel`` (the pipe), and the pipe's security descriptor read
back by name and checked: protected, SYSTEM and Administrators, the service's own SID, nothing for
Everyone. The SDDL servicehost builds is also checked on its own (no Windows needed)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest

from servicehost.platforms.control import Peer
from servicehost.platforms.windows.control_pipe import PipePermissions, pipe_name, pipe_sddl
from servicehost.platforms.windows.security import virtual_account_sid

from ..conftest import IN_CI, TOOLS
from .test_windows_wine import TAG, _remove
from .wine import NATIVE, ROOT, Wine, start_wine, winpath

SERVICE = ROOT / "tests" / "platforms" / "windows_pipe_service.py"


# -- the descriptor, on its own ----------------------------------------------------------------------------
def _aces(sddl: str) -> set[tuple[str, str, str]]:
    """(type, rights, sid) of each ACE of an SDDL DACL; rights letters sorted (Wine writes GWGR)."""
    out = set()
    for kind, rights, sid in re.findall(r"\(([A-Z]+);[^;]*;([A-Z]*);[^;]*;[^;]*;([^)]+)\)", sddl):
        out.add((kind, "".join(sorted(re.findall(r"G[ARWX]|[A-Z]{2}", rights))), sid))
    return out


def test_the_pipe_descriptor_is_protected_and_names_only_system_administrators_and_the_service():
    service = virtual_account_sid("shpiped")
    sddl = pipe_sddl([service, "S-1-5-18"], ["S-1-5-21-1-2-3-1001"])
    assert sddl.startswith("D:P")  # protected: nothing inherited from a parent
    assert _aces(sddl) == {("A", "GA", "SY"), ("A", "GA", "BA"), ("A", "GRGW", service),
                           ("A", "GRGW", "S-1-5-21-1-2-3-1001")}
    assert not {"WD", "AN", "S-1-1-0", "S-1-5-7", "AU", "IU"} & {sid for _, _, sid in _aces(sddl)}
    assert pipe_name("shpiped") == "\\\\.\\pipe\\servicehost-shpiped"


def test_pipe_permissions_writers_readers_and_everyone_else():
    rules = PipePermissions(["S-1-5-80-9"], group="S-1-5-21-7-513", group_name="Operators")
    admin = Peer(1, -1, -1, account="S-1-5-21-7-500", sids=("S-1-5-32-544",))
    member = Peer(2, -1, -1, account="S-1-5-21-7-1001", sids=("S-1-5-21-7-513",))
    other = Peer(3, -1, -1, account="S-1-5-21-7-1002", sids=("S-1-5-32-545",))
    assert rules.access(admin) == rules.access(Peer(4, -1, -1, account="S-1-5-80-9")) == "write"
    assert rules.access(member) == "read" and rules.access(other) is None
    assert "join that group" in rules.refusal(other) and "group Operators" in rules.refusal(other)


# -- a real service under the SCM ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def wine() -> Wine:
    if not NATIVE and not (TOOLS / "wine-python-env.sh").is_file():
        reason = f"shared tools not found at {TOOLS}: set SERVICEHOST_TOOLS"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    return start_wine(TOOLS, IN_CI)


@pytest.fixture
def piped(wine: Wine, tmp_path) -> Iterator[tuple[str, str]]:
    name = f"shpiped{TAG}"
    target = winpath(SERVICE) + ":Piped"
    try:
        wine.servicehost("install", target, "--name", name, "--state-dir", winpath(tmp_path), "--start", "manual")
        wine.servicehost("start", target, "--name", name)
        yield name, target
    finally:
        _remove(wine, name)


DACL_PROBE = r"""
import json, sys, win32security as s
sd = s.GetNamedSecurityInfo(sys.argv[1], s.SE_FILE_OBJECT, s.DACL_SECURITY_INFORMATION)
print(json.dumps(s.ConvertSecurityDescriptorToStringSecurityDescriptor(sd, s.SDDL_REVISION_1,
                                                                       s.DACL_SECURITY_INFORMATION)))
"""


@pytest.mark.real_manager
def test_status_threads_and_loglevel_through_the_named_pipe_whose_descriptor_is_read_back(wine, piped):
    name, target = piped

    def status() -> dict:
        proc = wine.servicehost("status", name, "--json", check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return json.loads(proc.stdout)

    first = status()
    assert (first["manager"], first["state"]) == ("windows", "running"), first
    assert first["detail"]["control channel"] == pipe_name(name), first["detail"]
    assert first["sub_state"] == "RUNNING" and first["ready"] is True
    pool = next(c for c in first["counters"] if c["name"] == "pipepool")
    second = status()
    again = next(c for c in second["counters"] if c["name"] == "pipepool")
    assert again["completed"] > pool["completed"], (pool, again)  # live counters, moving
    assert second["status_line"] and second["python"] and second["servicehost_version"]

    # The pipe's descriptor, read back by name: protected; SYSTEM and Administrators; the service's SID.
    sddl = wine.script(DACL_PROBE, pipe_name(name))
    assert isinstance(sddl, str) and sddl.startswith("D:P"), sddl
    aces = _aces(sddl)
    assert {("A", "GA", "SY"), ("A", "GA", "BA"), ("A", "GRGW", virtual_account_sid(name))} <= aces, sddl
    assert all(kind == "A" and rights in ("GA", "GRGW") for kind, rights, _ in aces), sddl
    assert not {"WD", "AN", "S-1-1-0", "S-1-5-7", "AU", "IU"} & {sid for _, _, sid in aces}, sddl
    assert status()["state"] == "running", "reading the descriptor by name did not break the channel"

    # A thread dump names the thread stuck in a task, and the function it is stuck in.
    dump = wine.servicehost("threads", name).stdout
    blocks = [b for b in dump.split("\n\n") if "in stuck_in_a_known_function" in b]
    assert len(blocks) == 1 and blocks[0].startswith("Thread pipepool"), dump

    # A write command: the log level of a logger, back by itself.
    said = wine.servicehost("loglevel", name, "pipeapp", "DEBUG", "--for", "60s").stdout
    assert f"{name}: logger pipeapp now DEBUG (was NOTSET); back to NOTSET by itself at" in said, said

    wine.servicehost("stop", target, "--name", name)
    stopped = wine.servicehost("status", name, "--json", check=False)
    assert json.loads(stopped.stdout)["state"] == "stopped" and json.loads(stopped.stdout)["counters"] is None
