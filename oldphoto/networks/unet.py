"""The scratch-detection UNet (published layout: ``first``, ``down_sample``, ``down_path``,
``up_path``, ``last``) with blur-pool downsampling and bilinear upsampling."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from oldphoto.networks.blocks import ReflectionPad


def _lrelu() -> nn.LeakyReLU:
    return nn.LeakyReLU(0.2, inplace=True)


class BlurPool(nn.Module):
    """Anti-aliased stride-2 downsampling: reflect-pad 1, depthwise [1,2,1]ᵀ[1,2,1]/16 filter."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        k = torch.tensor([1.0, 2.0, 1.0])
        filt = (k[:, None] * k[None, :]) / 16.0
        self.register_buffer("filt", filt.expand(channels, 1, 3, 3).clone())
        self.pad = ReflectionPad(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(self.pad(x), self.filt, stride=2, groups=x.shape[1])


class ConvBlock(nn.Module):
    """Two reflect-padded 3×3 convs, each with batch norm and LeakyReLU (``block``)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            ReflectionPad(1), nn.Conv2d(cin, cout, 3), nn.BatchNorm2d(cout), _lrelu(),
            ReflectionPad(1), nn.Conv2d(cout, cout, 3), nn.BatchNorm2d(cout), _lrelu(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class UpBlock(nn.Module):
    """Bilinear ×2, reflect-padded 3×3 conv, concat with the skip, then a ConvBlock."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.up = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            ReflectionPad(1),
            nn.Conv2d(cin, cout, 3),
        )
        self.conv_block = ConvBlock(2 * cout, cout)  # the upsampled half and the skip, ``cout`` each

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv_block(torch.cat([self.up(x), skip], dim=1))


class ScratchUNet(nn.Module):
    """Grey image in [-1, 1] (RGB with ``in_channels`` 3; short side 256, sides multiples of 2^depth) to damage logits.

    Level i has 2^(wf+i) channels, as published; ``first_width`` (not published) gives the
    full-resolution level its own width, where a thin stroke or a speck is a pixel or two wide.
    """

    def __init__(self, *, in_channels: int = 1, out_channels: int = 1, depth: int = 4, wf: int = 6,
                 first_width: int | None = None) -> None:
        super().__init__()
        chans = [2 ** (wf + i) for i in range(depth + 1)]
        if first_width is not None:
            chans[0] = int(first_width)
        self.first = nn.Sequential(ReflectionPad(3), nn.Conv2d(in_channels, chans[0], 7), _lrelu())
        self.down_sample = nn.ModuleList(
            nn.Sequential(ReflectionPad(1), nn.Conv2d(c, c, 3), nn.BatchNorm2d(c), _lrelu(), BlurPool(c))
            for c in chans[:depth]
        )
        self.down_path = nn.ModuleList(ConvBlock(chans[i], chans[i + 1]) for i in range(depth))
        self.up_path = nn.ModuleList(UpBlock(chans[i + 1], chans[i]) for i in reversed(range(depth)))
        self.last = nn.Sequential(ReflectionPad(1), nn.Conv2d(chans[0], out_channels, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first(x)
        skips = []
        for sample, path in zip(self.down_sample, self.down_path):
            skips.append(x)
            x = path(sample(x))
        for up, skip in zip(self.up_path, reversed(skips)):
            x = up(x, skip)
        return self.last(x)
