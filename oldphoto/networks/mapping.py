"""The three mapping networks that translate an old photo's latent into a clean one.

Channel plan (published: latent 64, base 64, width 512): the head widens
``in → 2b → 4b → 8b → 16b`` and the tail narrows ``16b → 8b → 4b → 2b → in``, each
capped at ``width``; the middle works at ``width``. All head/tail convs zero-pad.

Each network's :meth:`steps` is its order of operations (see :mod:`oldphoto.networks.steps`):
the forward runs them, and so do the tiled executor and the memory planner. The published
container names (``before_NL``, ``NL``, ``after_NL``, ...) are kept for the state-dict keys.
"""

from __future__ import annotations

import torch
from torch import nn

from oldphoto.networks.blocks import ResBlock, conv_in_relu
from oldphoto.networks.nonlocal_block import PartialNonLocal
from oldphoto.networks.patch_attention import PatchAttention
from oldphoto.networks.steps import Global, Local, Step, local, run_steps


def _widths(base: int, width: int) -> list[int]:
    return [min(base * 2**i, width) for i in range(1, 5)]


def head(in_channels: int, base: int, width: int, norm: str = "instance") -> list[nn.Module]:
    """Four conv-IN-ReLU units widening the latent to the working width."""
    chans = [in_channels, *_widths(base, width)]
    return [m for a, b in zip(chans, chans[1:]) for m in conv_in_relu(a, b, norm)]


def tail(in_channels: int, base: int, width: int, norm: str = "instance") -> list[nn.Module]:
    """Three conv-IN-ReLU units narrowing back, then a bare conv to the latent's channels."""
    chans = _widths(base, width)[::-1]
    layers = [m for a, b in zip(chans, chans[1:]) for m in conv_in_relu(a, b, norm)]
    return [*layers, nn.Conv2d(chans[-1], in_channels, 3, 1, 1)]


def _add(x: torch.Tensor, body: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return x + body


class MappingQuality(nn.Sequential):
    """Plain mapping (quality mode): head, ``n_blocks`` res blocks, tail (published ``model``).

    ``skip`` (not published; the bundled ``lite`` model's wiring) returns ``x + body(x)``: a
    latent skip lets every pixel's detail pass the eight conv-IN-ReLU units untouched, so a
    small network learns to correct it in minutes instead of first learning to carry it.
    ``norm="none"`` (lite too) drops the instance norms (see :func:`~oldphoto.networks.blocks.norm_layers`).
    """

    def __init__(
        self,
        *,
        in_channels: int = 64,
        base: int = 64,
        width: int = 512,
        n_blocks: int = 6,
        skip: bool = False,
        norm: str = "instance",
    ) -> None:
        super().__init__(
            *head(in_channels, base, width, norm),
            *[ResBlock(width, norm) for _ in range(n_blocks)],
            *tail(in_channels, base, width, norm),
        )
        self.skip = skip

    def steps(self) -> list[Step]:
        if not self.skip:
            return [local(self)]
        channels = self[-1].out_channels
        return [
            Local(tuple(self.children()), writes=("body",)),
            Global(_add, reads=("x", "body"), floats=3.0 * channels, movable=True),
        ]

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return run_steps(self.steps(), x, mask)


class MappingScratch(nn.Module):
    """Mapping with the partial non-local block (scratch mode)."""

    def __init__(
        self, *, in_channels: int = 64, base: int = 64, width: int = 512, n_blocks: int = 6, nl_blocks: int = 3
    ) -> None:
        super().__init__()
        self.before_NL = nn.Sequential(*head(in_channels, base, width))
        self.NL = PartialNonLocal(channels=width, n_blocks=nl_blocks)
        self.after_NL = nn.Sequential(*[ResBlock(width) for _ in range(n_blocks)], *tail(in_channels, base, width))

    def steps(self) -> list[Step]:
        return [local(self.before_NL), *self.NL.steps(), local(self.after_NL)]

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return run_steps(self.steps(), x, mask)


class MappingPatchAttention(nn.Module):
    """Mapping with multi-scale patch attention (high-resolution scratch mode)."""

    def __init__(
        self,
        *,
        in_channels: int = 64,
        base: int = 64,
        width: int = 512,
        patch_sizes: tuple[int, ...] | list[int] = (8, 4, 2),
        threshold: float = 0.6,
    ) -> None:
        super().__init__()
        p1, p2, p3 = patch_sizes
        self.before_NL = nn.Sequential(*head(in_channels, base, width), ResBlock(width), ResBlock(width))
        self.NL_scale_1 = PatchAttention(channels=width, patch=p1, threshold=threshold)
        self.res_block_1 = nn.Sequential(ResBlock(width), ResBlock(width))
        self.NL_scale_2 = PatchAttention(channels=width, patch=p2, threshold=threshold)
        self.res_block_2 = nn.Sequential(ResBlock(width), ResBlock(width))
        self.NL_scale_3 = PatchAttention(channels=width, patch=p3, threshold=threshold)
        self.after_NL = nn.Sequential(ResBlock(width), ResBlock(width), *tail(in_channels, base, width))

    def steps(self) -> list[Step]:
        return [
            local(self.before_NL),
            *self.NL_scale_1.steps(),
            local(self.res_block_1),
            *self.NL_scale_2.steps(),
            local(self.res_block_2),
            *self.NL_scale_3.steps(),
            local(self.after_NL),
        ]

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return run_steps(self.steps(), x, mask)
