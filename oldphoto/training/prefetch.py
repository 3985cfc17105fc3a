"""The next training batch, drawn on a background thread while the current step runs.

On a GPU the sampler's crops and degradations (CPU work) take about as long as the step
itself: on an H100 the published-width chain ran 17 steps/s with fp16 AMP and 15 in fp32,
because the GPU waited for data. Overlapping the two hides the sampler. The batches are the very
same as without it, because one thread draws them in order from the one generator. Resuming
needs the generator's state *after the batch just used*, which the thread has already moved
past. :meth:`BatchPrefetcher.numpy_state` keeps that state for the checkpoint.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Generic, TypeVar

import numpy as np

T = TypeVar("T")


class Batches(Generic[T]):
    """Draws each batch when it is taken, in the caller's thread (the default on the CPU)."""

    def __init__(self, draw: Callable[[], T], rng: np.random.Generator) -> None:
        self._draw, self._rng = draw, rng

    def next(self) -> T:
        """The next batch."""
        return self._draw()

    def numpy_state(self) -> dict[str, Any]:
        """The generator's state right after the last batch :meth:`next` returned, as a resume needs it."""
        return copy.deepcopy(self._rng.bit_generator.state)

    def close(self) -> None:
        """Nothing to stop."""


class BatchPrefetcher(Batches[T]):
    """Calls ``draw`` one batch ahead on a worker thread; ``draw`` may use ``rng`` and nothing the step uses."""

    def __init__(self, draw: Callable[[], T], rng: np.random.Generator) -> None:
        super().__init__(draw, rng)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="oldphoto-batches")
        self._after_used = super().numpy_state()
        self._pending: Future[T] = self._pool.submit(draw)

    def next(self) -> T:
        """The batch drawn ahead (an error in drawing it is raised here); the following one starts."""
        batch = self._pending.result()
        # The worker is idle between result() and submit(), so this is the state right after ``batch``.
        self._after_used = super().numpy_state()
        self._pending = self._pool.submit(self._draw)
        return batch

    def numpy_state(self) -> dict[str, Any]:
        return self._after_used

    def close(self) -> None:
        """Wait for the batch in flight (its draw cannot be interrupted) and stop the thread."""
        self._pending.cancel()
        self._pool.shutdown(wait=True)
