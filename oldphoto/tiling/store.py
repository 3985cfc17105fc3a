"""Full-size feature maps kept off the device: in RAM while a budget allows, on disk beyond it.

A store holds one C×H×W float32 map and is read and written by rectangles (tiles with their
halos). RAM stores are plain CPU tensors; disk stores are unlinked temporary files laid out
H×W×C so a rectangle is one contiguous run per row (one ``preadv``/``pwrite`` each) and the
mapped pages never count against the process's resident memory. An :class:`Arena` decides
which kind each new map gets and forgets a map's bytes when the map is garbage-collected.
"""

from __future__ import annotations

import os
import tempfile
import weakref

import numpy as np
import torch

_FLOAT = 4


class TensorStore:
    """A map held in RAM as a CPU tensor of shape (C, H, W), in whichever memory layout it came in."""

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor
        self.shape: tuple[int, int, int] = tuple(tensor.shape)  # type: ignore[assignment]

    @classmethod
    def empty(cls, c: int, h: int, w: int, *, channels_last: bool) -> TensorStore:
        """A new uninitialised map; ``channels_last`` stores it H×W×C (what channels-last convs read)."""
        if channels_last:
            return cls(torch.empty(h, w, c).permute(2, 0, 1))
        return cls(torch.empty(c, h, w))

    def read(self, y0: int, y1: int, x0: int, x1: int) -> torch.Tensor:
        """The rectangle ``[y0:y1, x0:x1]`` of every channel (a view, not a copy)."""
        return self.tensor[:, y0:y1, x0:x1]

    def write(self, y0: int, x0: int, block: torch.Tensor) -> None:
        """Copy ``block`` (C×h×w, any device) into the rectangle starting at (y0, x0)."""
        _, h, w = block.shape
        self.tensor[:, y0 : y0 + h, x0 : x0 + w].copy_(block)

    @property
    def nbytes(self) -> int:
        c, h, w = self.shape
        return c * h * w * _FLOAT


class FileStore:
    """A map in an unlinked temporary file, H×W×C float32, read and written row by row."""

    def __init__(self, c: int, h: int, w: int, directory: str | None = None) -> None:
        self.shape = (c, h, w)
        fd, path = tempfile.mkstemp(prefix="oldphoto-tile-", suffix=".f32", dir=directory)
        os.unlink(path)
        self.fd = fd
        os.ftruncate(fd, self.nbytes)
        self._closer = weakref.finalize(self, os.close, fd)

    @property
    def nbytes(self) -> int:
        c, h, w = self.shape
        return c * h * w * _FLOAT

    def _offset(self, y: int, x: int) -> int:
        c, _, w = self.shape
        return (y * w + x) * c * _FLOAT

    def read(self, y0: int, y1: int, x0: int, x1: int) -> torch.Tensor:
        """The rectangle ``[y0:y1, x0:x1]`` as a (C, h, w) view of a fresh H×W×C buffer."""
        c, _, w = self.shape
        buf = np.empty((y1 - y0, x1 - x0, c), dtype=np.float32)
        if x0 == 0 and x1 == w:
            _read_exactly(self.fd, buf.reshape(-1), self._offset(y0, 0))
        else:
            for r in range(y1 - y0):
                _read_exactly(self.fd, buf[r].reshape(-1), self._offset(y0 + r, x0))
        return torch.from_numpy(buf).permute(2, 0, 1)

    def write(self, y0: int, x0: int, block: torch.Tensor) -> None:
        """Write ``block`` (C×h×w) into the rectangle starting at (y0, x0)."""
        _, h, w = block.shape
        rows = block.detach().to("cpu", torch.float32).permute(1, 2, 0).contiguous().numpy()
        if x0 == 0 and w == self.shape[2]:
            os.pwrite(self.fd, rows.reshape(-1), self._offset(y0, 0))
            return
        for r in range(h):
            os.pwrite(self.fd, rows[r].reshape(-1), self._offset(y0 + r, x0))


def _read_exactly(fd: int, out: np.ndarray, offset: int) -> None:
    view = memoryview(out).cast("B")
    done = 0
    while done < len(view):
        n = os.preadv(fd, [view[done:]], offset + done)
        if n <= 0:
            raise OSError(f"short read from a tile file at offset {offset + done}")
        done += n


Store = TensorStore | FileStore


class Arena:
    """Hands out stores: RAM while the live maps fit ``ram_budget`` bytes, temporary files beyond.

    The bytes of a map are given back when its store is garbage-collected, so the executor
    frees a map simply by dropping its last reference.
    """

    def __init__(self, ram_budget: int, directory: str | None = None) -> None:
        self.ram_budget = ram_budget
        self.directory = directory
        self.in_ram = 0
        self.on_disk = 0

    def allocate(self, c: int, h: int, w: int, *, channels_last: bool) -> Store:
        """A new C×H×W map; RAM if it fits what is left of the budget, otherwise a temporary file."""
        nbytes = c * h * w * _FLOAT
        if self.in_ram + nbytes <= self.ram_budget:
            store: Store = TensorStore.empty(c, h, w, channels_last=channels_last)
            self.track(store)
            return store
        self.on_disk += 1
        return FileStore(c, h, w, self.directory)

    def track(self, store: TensorStore) -> None:
        """Count an existing RAM store against the budget until it is garbage-collected."""
        self.in_ram += store.nbytes
        weakref.finalize(store, self._release, store.nbytes)

    def _release(self, nbytes: int) -> None:
        self.in_ram -= nbytes
