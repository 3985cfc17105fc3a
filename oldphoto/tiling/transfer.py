"""Moving tiles between host stores and the compute device.

On the CPU this is a pass-through. On CUDA, tiles are staged through pinned (page-locked)
host memory so host-to-device copies run asynchronously, and device-to-host writes are
queued two deep: the copy of one tile's output overlaps the next tile's reads and compute,
and only then is it written into its store. PyTorch's caching host allocator keeps the
pinned blocks and will not hand one out again before its copy has finished.
"""

from __future__ import annotations

from collections import deque

import torch

from oldphoto.tiling.store import Store

#: Device-to-host copies in flight before the oldest is written to its store.
WRITE_DEPTH = 2


class Transfer:
    """Reads store rectangles onto the device and writes device tiles back into stores."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cuda = device.type == "cuda"
        self._pending: deque[tuple[torch.cuda.Event, torch.Tensor, Store, int, int]] = deque()

    def to_device(self, block: torch.Tensor) -> torch.Tensor:
        """A host C×h×w rectangle (possibly a view) as a float32 tensor on the device."""
        if not self.cuda:
            return block
        staged = torch.empty(block.shape[1], block.shape[2], block.shape[0], pin_memory=True).permute(2, 0, 1)
        staged.copy_(block)
        return staged.to(self.device, non_blocking=True)

    def write(self, store: Store, y0: int, x0: int, tile: torch.Tensor) -> None:
        """Write a C×h×w device tile into ``store`` at (y0, x0), asynchronously on CUDA."""
        if not self.cuda:
            store.write(y0, x0, tile)
            return
        c, h, w = tile.shape
        staged = torch.empty(h, w, c, pin_memory=True).permute(2, 0, 1)
        staged.copy_(tile, non_blocking=True)
        done = torch.cuda.Event()
        done.record()
        self._pending.append((done, staged, store, y0, x0))
        while len(self._pending) > WRITE_DEPTH:
            self._land()

    def flush(self) -> None:
        """Finish every queued write (call at the end of each pass, before its output is read)."""
        while self._pending:
            self._land()

    def _land(self) -> None:
        done, staged, store, y0, x0 = self._pending.popleft()
        done.synchronize()
        store.write(y0, x0, staged)
