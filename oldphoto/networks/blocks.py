"""Layers shared by the restoration networks."""

from __future__ import annotations

import torch
from torch import nn


def instance_norm(channels: int) -> nn.InstanceNorm2d:
    """Instance norm as published: no affine parameters, no running statistics, eps 1e-5."""
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False, eps=1e-5)


class ResBlock(nn.Module):
    """Residual block: reflect-pad, 3×3 conv, IN, ReLU, reflect-pad, 3×3 conv, IN; plus input.

    The container is named ``conv_block`` with the published indices (convs at 1 and 5).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            instance_norm(channels),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            instance_norm(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


def conv_in_relu(cin: int, cout: int) -> list[nn.Module]:
    """Zero-padded 3×3 conv, IN, ReLU: the unit the mapping networks' heads and tails use."""
    return [nn.Conv2d(cin, cout, 3, 1, 1), instance_norm(cout), nn.ReLU(inplace=True)]
