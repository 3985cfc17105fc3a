"""Overlap image decoding and encoding with compute: a read-ahead iterator and a write-behind queue.

A batch run spends most of its time in the networks, which release the GIL, so decoding the
next photos and encoding the finished ones on a couple of background threads costs the
compute almost nothing. Both helpers keep order, bound how much is in flight (so memory
stays flat on a folder of thousands of scans) and hand errors back instead of losing them::

    with WriteBehind() as writer:
        for item in prefetch(paths, load_photo):
            if item.error is not None:
                report(item.source, item.error)
                continue
            restored = restorer.restore(item.value.image)
            writer.submit(save_image, restored, out_path(item.source), source=item.source)
    for failure in writer.failures:
        report(failure.source, failure.error)

Neither imports torch; both are plain ``concurrent.futures`` underneath.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

S = TypeVar("S")
R = TypeVar("R")


@dataclass(frozen=True)
class Loaded(Generic[S, R]):
    """One source and what loading it gave: ``value``, or the ``error`` it raised."""

    source: S
    value: R | None = None
    error: BaseException | None = None

    def get(self) -> R:
        """The loaded value; re-raises the loader's error if there was one."""
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]


def prefetch(sources: Iterable[S], load: Callable[[S], R], *, ahead: int = 2, workers: int = 1) -> Iterator[Loaded[S, R]]:
    """Yield ``Loaded(source, load(source))`` in order, loading up to ``ahead`` sources early.

    ``load`` runs on ``workers`` background threads; an exception it raises is returned in
    :attr:`Loaded.error` for that source and the iteration goes on. ``sources`` is consumed
    lazily, so a generator walking a folder works. Closing the iterator early (``break``)
    cancels the loads not yet started and waits for the running ones.
    """
    if ahead < 1 or workers < 1:
        raise ValueError("ahead and workers must be at least 1")
    pending: deque[tuple[S, Future[R]]] = deque()
    items = iter(sources)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="oldphoto-prefetch") as pool:
        try:
            exhausted = False
            while True:
                while not exhausted and len(pending) < ahead + 1:
                    source = next(items, _END)
                    if source is _END:
                        exhausted = True
                        break
                    pending.append((source, pool.submit(load, source)))
                if not pending:
                    return
                source, future = pending.popleft()
                try:
                    yield Loaded(source, value=future.result())
                except Exception as exc:  # noqa: BLE001 - handed to the caller with its source
                    yield Loaded(source, error=exc)
        finally:
            for _, future in pending:
                future.cancel()


_END: Any = object()


@dataclass(frozen=True)
class Failure:
    """A background write that raised: what it was for, and the error."""

    source: Any
    error: BaseException


class WriteBehind:
    """Run writes (encode + save) on a background thread, at most ``depth`` queued at once.

    :meth:`submit` blocks only when ``depth`` writes are already waiting, so a slow disk
    slows the run down instead of filling memory with finished images. Errors are collected
    in :attr:`failures` (with the ``source`` given to :meth:`submit`) and ``on_done`` is
    called after each write, from the writer thread. Leaving the ``with`` block waits for
    every write.
    """

    def __init__(
        self, *, depth: int = 2, workers: int = 1, on_done: Callable[[Any, BaseException | None], None] | None = None
    ) -> None:
        if depth < 1 or workers < 1:
            raise ValueError("depth and workers must be at least 1")
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="oldphoto-write")
        self._slots = threading.BoundedSemaphore(depth + workers)
        self._lock = threading.Lock()
        self._on_done = on_done
        self.failures: list[Failure] = []

    def submit(self, write: Callable[..., Any], *args: Any, source: Any = None, **kwargs: Any) -> Future[Any]:
        """Queue ``write(*args, **kwargs)`` and return its future; ``source`` labels it in :attr:`failures` and ``on_done``."""
        self._slots.acquire()
        try:
            future = self._pool.submit(write, *args, **kwargs)
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(lambda f: self._finished(f, source))
        return future

    def _finished(self, future: Future[Any], source: Any) -> None:
        error = None if future.cancelled() else future.exception()
        if error is not None:
            with self._lock:
                self.failures.append(Failure(source, error))
        try:
            if self._on_done is not None:
                self._on_done(source, error)
        finally:
            self._slots.release()

    def close(self) -> None:
        """Wait for every queued write to finish."""
        self._pool.shutdown(wait=True)

    def __enter__(self) -> WriteBehind:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
