"""The read-ahead iterator and the write-behind queue: order, errors, bounds, overlap."""

from __future__ import annotations

import threading
import time

import pytest

from oldphoto.prefetch import WriteBehind, prefetch


def test_prefetch_keeps_order_and_hands_back_errors() -> None:
    def load(n: int) -> int:
        if n == 2:
            raise ValueError("bad photo")
        time.sleep(0.01 * (5 - n))  # later items finish first
        return n * n

    items = list(prefetch(range(5), load, ahead=3, workers=3))
    assert [i.source for i in items] == [0, 1, 2, 3, 4]
    assert [i.value for i in items if i.error is None] == [0, 1, 9, 16]
    assert isinstance(items[2].error, ValueError)
    with pytest.raises(ValueError):
        items[2].get()


def test_prefetch_reads_ahead_only_as_far_as_asked() -> None:
    started: list[int] = []

    def load(n: int) -> int:
        started.append(n)
        return n

    it = prefetch(iter(range(100)), load, ahead=2)
    next(it)
    time.sleep(0.05)
    assert max(started) <= 3
    it.close()


def test_prefetch_overlaps_loading_with_the_consumer() -> None:
    """While the consumer holds photo k, photo k+1 is loaded: shown by events, not by a stopwatch."""
    loaded = [threading.Event() for _ in range(6)]

    def load(n: int) -> int:
        loaded[n].set()
        return n

    for item in prefetch(range(6), load):
        n = item.get()
        if n + 1 < len(loaded):
            # A serial loader would only start photo n+1 when asked for it, after this wait.
            assert loaded[n + 1].wait(timeout=30), f"photo {n + 1} was not loaded while photo {n} was in use"


def test_write_behind_collects_failures_and_waits() -> None:
    written: list[int] = []
    done: list[tuple[int, bool]] = []

    def write(n: int) -> None:
        if n == 1:
            raise OSError("disk full")
        time.sleep(0.01)
        written.append(n)

    with WriteBehind(on_done=lambda source, error: done.append((source, error is None))) as writer:
        for n in range(4):
            writer.submit(write, n, source=n)
    assert sorted(written) == [0, 2, 3]
    assert [(f.source, type(f.error)) for f in writer.failures] == [(1, OSError)]
    assert sorted(done) == [(0, True), (1, False), (2, True), (3, True)]


def test_write_behind_bounds_the_queue() -> None:
    release = threading.Event()
    with WriteBehind(depth=1) as writer:
        writer.submit(release.wait)
        writer.submit(lambda: None)
        blocked = threading.Thread(target=writer.submit, args=(lambda: None,))
        blocked.start()
        blocked.join(0.1)
        assert blocked.is_alive()  # depth 1 + 1 running: the third submit waits
        release.set()
        blocked.join(1.0)
        assert not blocked.is_alive()
