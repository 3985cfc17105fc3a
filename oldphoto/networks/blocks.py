"""Layers shared by the restoration networks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class InstanceNorm(nn.InstanceNorm2d):
    """Instance norm as published, computed with PyTorch's instance-norm kernel.

    The published numbers come from this kernel bit for bit. :mod:`oldphoto.speed` swaps in a
    faster kernel at load where that cannot be seen in the output; ``published_kernel``
    says which one a norm computes with.
    """

    published_kernel: bool = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.instance_norm(x, eps=self.eps)


class ReflectionPad(nn.ReflectionPad2d):
    """Reflection padding that keeps its input's dtype under autocast.

    CPU autocast runs reflection padding in fp32, so in bf16 every pad would widen the
    feature map to fp32 and the next convolution would narrow it back: two extra copies of
    each map, a fifth of the bf16 run time. Padding only moves values, so it is exact in
    any dtype and needs no widening.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return super().forward(x)


def relu() -> nn.ReLU:
    """ReLU as a new tensor rather than in place.

    The published networks use in-place ReLUs; the values are the same either way. On the
    CPU PyTorch's in-place bf16 ReLU takes about twice as long as the out-of-place one
    (12 ms against 6 ms on a 512-channel 1-MP latent, 2 threads), which cost 7% of a bf16
    restore; in fp32 the two are equally fast. The extra map is transient: the input is
    dropped as soon as the ReLU returns, and a convolution already holds two maps at once.
    """
    return nn.ReLU()


def instance_norm(channels: int) -> InstanceNorm:
    """Instance norm as published: no affine parameters, no running statistics, eps 1e-5."""
    return InstanceNorm(channels, affine=False, track_running_stats=False, eps=1e-5)


NORMS = ("instance", "none")


def norm_layers(channels: int, norm: str) -> list[nn.Module]:
    """The normalisation after a convolution: the published instance norm, or none.

    ``none`` is for the bundled lite model: instance norms divide each channel by its
    spread over the whole photo, so a small network cannot tell fine grain from detail by
    its amplitude; restoration networks that keep per-pixel noise levels use no norm.
    """
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, not {norm!r}")
    return [instance_norm(channels)] if norm == "instance" else []


class ResBlock(nn.Module):
    """Residual block: reflect-pad, 3×3 conv, IN, ReLU, reflect-pad, 3×3 conv, IN; plus input.

    The container is named ``conv_block`` with the published indices (convs at 1 and 5);
    ``norm="none"`` drops the two norms (convs at 1 and 4).
    """

    def __init__(self, channels: int, norm: str = "instance") -> None:
        super().__init__()
        self.channels = channels
        self.conv_block = nn.Sequential(
            ReflectionPad(1),
            nn.Conv2d(channels, channels, 3),
            *norm_layers(channels, norm),
            relu(),
            ReflectionPad(1),
            nn.Conv2d(channels, channels, 3),
            *norm_layers(channels, norm),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Added into the block's fresh output (the same sum) to save allocating a third map.
        return self.conv_block(x).add_(x)


def conv_in_relu(cin: int, cout: int, norm: str = "instance") -> list[nn.Module]:
    """Zero-padded 3×3 conv, IN (unless ``norm="none"``), ReLU: the mapping heads' and tails' unit."""
    return [nn.Conv2d(cin, cout, 3, 1, 1), *norm_layers(cout, norm), relu()]
