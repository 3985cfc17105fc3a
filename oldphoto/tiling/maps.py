"""Full-size feature maps as the tiled executor sees them, and how it walks them in tiles.

A :class:`Map` is a map in a host store (:mod:`.store`) with the per-channel transform that
is still to be applied when it is read: an instance norm's statistics, a ReLU, a residual
block's skip sum. :class:`Moments` gathers those statistics tile by tile.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from oldphoto.tiling.store import Store


@dataclass
class Map:
    """A full-size feature map in a host store, with a per-channel transform still to apply.

    Read value = ``relu?((stored − mean) · rstd) + skip`` (each part optional). ``skip`` never
    has a skip of its own, so a read costs at most two store reads.
    """

    store: Store
    mean: torch.Tensor | None = None
    rstd: torch.Tensor | None = None
    relu: bool = False
    skip: Map | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.store.shape

    @property
    def plain(self) -> bool:
        return self.mean is None and not self.relu and self.skip is None


class Moments:
    """Per-channel mean and biased variance of a map, accumulated tile by tile (Chan's merge)."""

    def __init__(self) -> None:
        self.n = 0
        self.mean: torch.Tensor | None = None
        self.m2: torch.Tensor | None = None

    def add(self, tile: torch.Tensor) -> None:
        """Fold in a 1×C×h×w tile.

        The per-tile statistics come from group norm's kernel with one channel per group and
        eps 0 (exactly instance norm's statistics): one pass, several times faster than
        ``var_mean`` on the CPU; its normalised output is discarded. Per-tile variances come
        back as 1/rstd², exact to float32 rounding. The CPU kernel reads either memory layout;
        PyTorch's other kernels (CUDA) refuse anything but a plain contiguous tile.
        """
        c, nb = tile.shape[1], tile.shape[2] * tile.shape[3]
        t = tile.float()
        if t.device.type != "cpu":
            t = t.contiguous()
        elif not (t.is_contiguous() or t.is_contiguous(memory_format=torch.channels_last)):
            t = t.contiguous(memory_format=torch.channels_last)
        _, mu, rstd = torch.native_group_norm(t, None, None, 1, c, nb, c, 0.0)
        mu, var = mu.reshape(c), rstd.reshape(c).double().pow(-2)
        mu, m2 = mu.double(), var * nb
        if self.n == 0:
            self.n, self.mean, self.m2 = nb, mu, m2
            return
        n = self.n + nb
        delta = mu - self.mean
        self.mean = self.mean + delta * (nb / n)
        self.m2 = self.m2 + m2 + delta * delta * (self.n * nb / n)
        self.n = n

    def normaliser(self, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, 1/sqrt(var + eps)) as float32, what instance norm applies."""
        assert self.mean is not None and self.m2 is not None
        return self.mean.float(), torch.rsqrt(self.m2 / self.n + eps).float()


def tile_grid(height: int, width: int, side: int) -> Iterator[tuple[int, int, int, int]]:
    """Raster-order tiles ``(y0, y1, x0, x1)`` of side ``side`` covering a height×width map."""
    for y0 in range(0, height, side):
        for x0 in range(0, width, side):
            yield y0, min(y0 + side, height), x0, min(x0 + side, width)


def tiles_per_pass(height: int, width: int, tile: int) -> int:
    """How many tiles one pass over a height×width image takes."""
    return math.ceil(height / tile) * math.ceil(width / tile)
