import random
import threading
import time
from queue import Empty

import pytest

from servicehost.errors import QueueClosed, QueueFull
from servicehost.workers.queues import ClosableQueue


def test_fifo_and_counts():
    q = ClosableQueue(10)
    for i in range(5):
        q.put(i, weight=2)
    assert q.depth == 5 and q.accepted == 10
    assert [q.get() for _ in range(5)] == [0, 1, 2, 3, 4]
    assert q.depth == 0


def test_put_blocks_when_full_until_a_get_makes_space():
    q = ClosableQueue(2)
    q.put(1)
    q.put(2)
    with pytest.raises(QueueFull):
        q.put(3, timeout=0.05)
    done = threading.Event()

    def producer():
        q.put(3)  # blocks: backpressure
        done.set()

    threading.Thread(target=producer, daemon=True).start()
    assert not done.wait(0.1)
    assert q.get() == 1
    assert done.wait(5)
    assert [q.get(), q.get()] == [2, 3]


def test_close_drains_accepted_items_then_raises_for_every_consumer():
    q = ClosableQueue(10)
    for i in range(3):
        q.put(i)
    q.close()
    with pytest.raises(QueueClosed):
        q.put(99)
    assert [q.get(), q.get(), q.get()] == [0, 1, 2]
    for _ in range(3):  # every consumer sees the end, not just the first
        with pytest.raises(QueueClosed):
            q.get()


def test_close_wakes_blocked_consumers_and_producers():
    q = ClosableQueue(1)
    q.put("x")
    outcomes = []

    def producer():
        try:
            q.put("y")
        except QueueClosed:
            outcomes.append("producer woke")

    p = threading.Thread(target=producer)
    p.start()
    time.sleep(0.05)
    q.close()
    p.join(5)
    assert outcomes == ["producer woke"]
    assert q.get() == "x"
    consumers_woke = []

    def consumer():
        try:
            q.get()
        except QueueClosed:
            consumers_woke.append(1)

    threads = [threading.Thread(target=consumer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert len(consumers_woke) == 4


def test_take_all_hands_back_the_rest_and_keeps_the_end_marker():
    q = ClosableQueue(10)
    for i in range(4):
        q.put(i)
    assert q.get() == 0
    q.close()
    assert q.take_all() == [1, 2, 3]
    assert q.depth == 0
    with pytest.raises(QueueClosed):
        q.get(timeout=1)


def test_get_timeout_and_bad_size():
    with pytest.raises(Empty):
        ClosableQueue(1).get(timeout=0.01)
    with pytest.raises(ValueError):
        ClosableQueue(0)


def test_timed_hand_offs_taken_out_of_turn_are_each_timed():
    """One consumer takes a timed hand-off and is preempted before it looks at it; another takes
    the next timed ones meanwhile and settles them. Each timed hand-off is still timed once, in
    whatever order they are looked at. The interleaving is played in order on one thread."""
    q: ClosableQueue[object] = ClosableQueue(10_000, track=True)
    items = [object() for _ in range(64 * 4)]  # every 64th is timed: items[63], [127], [191], [255]
    for x in items:
        q.put(x)
    for _ in range(63):
        q.settle(q.get())
    held = q._items.get()  # consumer A has taken items[63], and has not yet looked at it
    assert held is items[63]
    for _ in range(64):  # consumer B takes items[64..127] and times items[127]
        q.settle(q.get())
    assert q.waits().samples == 1
    q._took(held)  # A goes on: its item is timed too
    q.settle(held)
    for _ in range(128):
        q.settle(q.get())
    assert q.waits().samples == 4


def test_a_timed_hand_off_taken_back_is_not_timed_and_the_timing_goes_on():
    """take_all (a stop deadline) takes the stamped hand-offs back: they were never got, so not
    timed, and a consumer that took one just before looks at it for nothing."""
    q: ClosableQueue[object] = ClosableQueue(10_000, track=True)
    items = [object() for _ in range(64 * 2)]
    for x in items[:64]:
        q.put(x)
    for _ in range(63):
        q.settle(q.get())
    held = q._items.get()  # taken, not looked at yet
    for x in items[64:]:
        q.put(x)
    assert len(q.take_all()) == 64  # items[127] (stamped) among them
    q._took(held)  # stamps were cleared with the take-back
    assert q.waits().samples == 0
    for _ in range(64):
        q.put(object())
    for _ in range(64):
        q.settle(q.get())
    assert q.waits().samples == 1


def test_wait_settled_returns_only_once_everything_accepted_before_it_is_settled():
    """Producers, consumers that take and settle, and waiters starting at any moment: each
    wait returns True only after every item accepted before it was settled (no lost settle)."""

    class Item:
        def __init__(self, seq: int) -> None:
            self.seq = seq

    q: ClosableQueue[Item] = ClosableQueue(64, track=True)
    settled: set[int] = set()
    failures: list[str] = []
    total = 20_000

    def consume() -> None:
        while True:
            try:
                item = q.get()
            except QueueClosed:
                return
            if item.seq % 97 == 0:
                time.sleep(0.0005)  # some items are held a while
            settled.add(item.seq)
            q.settle(item)

    def wait(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(20):
            time.sleep(rng.random() / 500)
            before = q.accepted
            if not q.wait_settled(60):
                failures.append("timed out")
            missing = [s for s in range(before) if s not in settled]
            if missing:
                failures.append(f"returned with {len(missing)} unsettled, first {missing[:3]}")

    consumers = [threading.Thread(target=consume) for _ in range(4)]
    waiters = [threading.Thread(target=wait, args=(i,)) for i in range(3)]
    for t in consumers + waiters:
        t.start()
    for seq in range(total):
        q.put(Item(seq))
    for t in waiters:
        t.join(120)
    q.close()
    for t in consumers:
        t.join(60)
    assert failures == [] and len(settled) == total
    assert q.wait_settled(0)  # nothing outstanding: at once


@pytest.mark.parametrize("mixed", [False, True], ids=["plain", "holds-and-timeouts"])
@pytest.mark.parametrize("maxsize", [1, 3, 16])
def test_many_producers_on_a_full_queue_are_each_woken(maxsize, mixed):
    """Producers outnumber the room and wait for it: only the consumers' gets can wake them
    (plain), or, mixed, some wait with a short timeout (and try again) while intake is held and
    released now and then. No producer is left asleep beside room it was never told of, and
    every item a put accepted arrives once."""
    q = ClosableQueue(maxsize)
    per, producers = 300, 6
    received: list[tuple[int, int]] = []
    accepted: list[tuple[int, int]] = []
    timeouts = [0]
    lock = threading.Lock()

    def produce(p: int) -> None:
        timeout = 0.001 if mixed and p % 2 else None
        for i in range(per):
            while True:
                try:
                    q.put((p, i), timeout=timeout)
                except QueueClosed:  # the test gave up on a producer left asleep
                    return
                except QueueFull:
                    with lock:
                        timeouts[0] += 1
                    continue
                with lock:
                    accepted.append((p, i))
                break

    def consume() -> None:
        rng = random.Random()
        while True:
            try:
                item = q.get()
            except QueueClosed:
                return
            with lock:
                received.append(item)
            if rng.random() < 0.01:
                time.sleep(0.001)  # a slow task now and then: the queue fills

    done = threading.Event()

    def hold_and_release() -> None:
        while mixed and not done.wait(0.005):
            q.hold()
            time.sleep(0.002)
            q.release()

    makers = [threading.Thread(target=produce, args=(p,)) for p in range(producers)]
    takers = [threading.Thread(target=consume) for _ in range(3)]
    holder = threading.Thread(target=hold_and_release)
    for t in makers + takers + [holder]:
        t.start()
    guard = time.monotonic() + 60  # hang guard: the whole test takes about a second
    for t in makers:
        t.join(max(0.0, guard - time.monotonic()))
    stuck = sum(t.is_alive() for t in makers)
    done.set()
    holder.join(10)
    q.close()
    for t in takers:
        t.join(60)
    assert stuck == 0
    assert sorted(received) == sorted(accepted) == [(p, i) for p in range(producers) for i in range(per)]
