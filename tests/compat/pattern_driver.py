"""Drives a pattern script through its own command line and pywin32's status and control calls,
the same way on both sides: run by the Windows Python under Wine (the real pywin32 and SCM) and by
this Python on Linux (servicehost.compat under supervisord). Prints one JSON document: what each
step saw, and this side's text for each error code (so a test compares codes, not wordings).

    python pattern_driver.py SCRIPT NAME TRACE_FILE STEPS_JSON

Steps (a JSON list of lists): ["trace"] sets the custom option ``trace`` to TRACE_FILE (where the
pattern_trace.py hooks write); ["cli", ARG...] runs
``python SCRIPT ARG...`` (stdout lines and exit code); ["until", STATE] waits for
QueryServiceStatus to report STATE (4 running, 1 stopped); ["seen", HOOK, N] waits for the N-th
HOOK line in the trace (TRACE_FILE may also be a script's own trace or log file: each line that
is not JSON is a hook); ["query"]; ["control", CODE]. Waits are hang guards only.
"""

import json
import subprocess
import sys
import time

from servicehost.compat import win32api, win32serviceutil

HANG_GUARD = 90.0
CODES = (87, 1052, 1053, 1056, 1058, 1060, 1061, 1062, 1063, 1073)


def hooks(trace):
    """The hooks in the trace: a JSON line's ``hook``; any other line (a script's own log or trace
    file) is itself the hook."""
    try:
        with open(trace, encoding="utf-8") as fh:
            lines = [line.rstrip("\r\n") for line in fh]
    except OSError:
        return []
    return [json.loads(line)["hook"] if line.startswith("{") else line for line in lines if line]


def wait(what, done):
    deadline = time.monotonic() + HANG_GUARD
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for %s" % (what,))
        time.sleep(0.05)


def outcome(call):
    try:
        return {"result": list(call())}
    except win32api.error as exc:
        return {"error": exc.winerror, "func": exc.funcname}


def main():
    script, name, trace, steps = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    seen = []
    for step in steps:
        kind, args = step[0], step[1:]
        if kind == "trace":
            win32serviceutil.SetServiceCustomOption(name, "trace", trace)
            continue
        if kind == "cli":
            proc = subprocess.run([sys.executable, script] + list(args), stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=HANG_GUARD)
            out = proc.stdout.decode("utf-8", "replace").replace("\r\n", "\n")
            err = proc.stderr.decode("utf-8", "replace").replace("\r\n", "\n")
            seen.append({"step": step, "stdout": out.splitlines(), "rc": proc.returncode,
                         "stderr_last": (err.strip().splitlines() or [""])[-1]})
        elif kind == "until":
            wait(step, lambda: win32serviceutil.QueryServiceStatus(name)[1] == args[0])
        elif kind == "seen":
            wait(step, lambda: hooks(trace).count(args[0]) >= args[1])
        elif kind == "query":
            seen.append({"step": step, **outcome(lambda: win32serviceutil.QueryServiceStatus(name))})
        elif kind == "control":
            seen.append({"step": step, **outcome(lambda: win32serviceutil.ControlService(name, args[0]))})
        else:
            raise ValueError("unknown step %r" % (step,))
    texts = {code: win32api.FormatMessage(code).strip() for code in CODES}
    print(json.dumps({"steps": seen, "hooks": hooks(trace), "texts": texts}))


if __name__ == "__main__":
    main()
