"""The kill campaign of issue 7: ``kill -9`` at random moments while files arrive both by atomic
rename and by slow in-place writes (some closing and reopening). Afterwards every file is
recorded exactly once, its recorded sha256 is the source's and the decompressed output's,
nothing is stuck in the drop folder and nothing is in ``failed/``.

``DROP_FOLDER_KILLS`` (default 15) and ``DROP_FOLDER_SEED`` (default random, printed) replay or
widen it. The sleeps are the random moments of the kills and the pace of the writers (input),
never timing assertions.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time

from servicehost.errors import ExitCode

from .drops import check_exactly_once, content, drop_atomically, raw, rows, start, wait_until, write_in_place

KILLS = int(os.environ.get("DROP_FOLDER_KILLS", "15"))


def test_kill_9_at_random_moments_while_files_arrive_every_way(tmp_path):
    seed = int(os.environ.get("DROP_FOLDER_SEED", str(random.randrange(1 << 32))))
    print(f"DROP_FOLDER_SEED={seed}")
    rng = random.Random(seed)
    drop = tmp_path / "drop"
    drop.mkdir(parents=True)

    jobs = []
    for i in range(8 * KILLS):  # renamed in: taken at once
        jobs.append(("renamed", f"r{i:04d}.bin", content(i, rng.choice([1, 16, 64, 256]) * 1024)))
    for i in range(2 * KILLS):  # written in place, pausing up to twice the settle interval
        jobs.append(("in place", f"w{i:04d}.bin", content(10_000 + i, rng.choice([64, 128, 256]) * 1024)))
    for i in range(KILLS // 3 + 1):  # closed and reopened between pieces
        jobs.append(("reopened", f"a{i:04d}.log", content(20_000 + i, 96 * 1024)))
    rng.shuffle(jobs)
    made = {raw(name): data for _, name, data in jobs}
    pending = list(jobs)
    lock = threading.Lock()
    errors: list[BaseException] = []

    def writer(wrng: random.Random) -> None:
        try:
            while True:
                with lock:
                    if not pending:
                        return
                    kind, name, data = pending.pop()
                if kind == "renamed":
                    drop_atomically(drop, name, data)
                elif kind == "in place":
                    write_in_place(drop, name, data, wrng.randint(2, 5), wrng.uniform(0.05, 0.6))
                else:
                    write_in_place(drop, name, data, 4, 0.02, reopen=True)
                time.sleep(wrng.uniform(0, 0.15))
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(random.Random(rng.random()),)) for _ in range(3)]
    for t in threads:
        t.start()
    kills = mid_work = 0
    try:
        for _ in range(KILLS):
            svc = start(tmp_path, "--workers", str(rng.choice([1, 2, 4, 8])), settle=0.3, wait_ready=False)
            with svc:
                before = len(rows(tmp_path))
                time.sleep(rng.uniform(0.1, 1.5))  # the random moment: starting, scanning, hashing, recording
                waiting = [n for n in os.listdir(drop) if not n.startswith(".")]
                svc.signal(signal.SIGKILL)
                code = svc.wait()
                assert code == -signal.SIGKILL, "the service ended before the kill:\n" + "\n".join(svc.output())
            kills += 1
            mid_work += bool(waiting) and len(rows(tmp_path)) > before  # it was working, with more to do
    finally:
        for t in threads:
            t.join()
    assert not errors, errors

    with start(tmp_path, "--workers", "4", settle=0.3) as svc:
        wait_until(lambda: not os.listdir(drop) and len(rows(tmp_path)) >= len(made),
                   "every file recorded and gone from the drop folder")
        svc.signal(signal.SIGTERM)
        assert svc.wait() == ExitCode.OK, "\n".join(svc.output())
    counts = check_exactly_once(tmp_path, made)
    kinds = {k: sum(1 for kind, _, _ in jobs if kind == k) for k in ("renamed", "in place", "reopened")}
    print(f"kill campaign: {kills} kill -9 ({mid_work} while recording with files waiting); {counts['files']} files ({kinds['renamed']} renamed in, "
          f"{kinds['in place']} written in place slowly, {kinds['reopened']} closed and reopened); "
          f"{counts['rows']} rows; exactly-once violations: {counts['twice']} twice, 0 lost, 0 corrupt")

