"""The published SPADE face generator (Face_Enhancement), conditioned on the degraded face only.

The degraded face ``d`` (in [-1, 1], S×S) is both the generator's seed (resized to S/32 and
convolved by ``fc``) and the modulation input of every SPADE norm. Spectral norm is folded into
plain conv weights at import (``oldphoto.weights.importer``), so every conv here is a plain one.
Module names follow the published state-dict keys.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_SLOPE = 0.2
#: Stage widths as multiples of the base filter count, head first (published: 16, 8, 4, 2, 1).
_UP_WIDTHS = (16, 8, 4, 2, 1)


def _resize(d: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(d, size=size, mode="bilinear", align_corners=False)


class SPADE(nn.Module):
    """Batch norm without affine parameters (running statistics), modulated by the degraded face."""

    def __init__(self, *, channels: int, label_channels: int = 3, hidden: int = 128) -> None:
        super().__init__()
        self.param_free_norm = nn.BatchNorm2d(channels, affine=False)
        self.mlp_shared = nn.Sequential(nn.Conv2d(label_channels, hidden, 3, 1, 1), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(hidden, channels, 3, 1, 1)
        self.mlp_beta = nn.Conv2d(hidden, channels, 3, 1, 1)

    def forward(self, x: torch.Tensor, degraded: torch.Tensor) -> torch.Tensor:
        bn = self.param_free_norm
        # Always the running statistics: this is an inference port, whatever .train() says.
        normalized = F.batch_norm(x, bn.running_mean, bn.running_var, training=False, eps=bn.eps)
        a = self.mlp_shared(_resize(degraded, (x.shape[-2], x.shape[-1])))
        return normalized * (1 + self.mlp_gamma(a)) + self.mlp_beta(a)


class SPADEResBlock(nn.Module):
    """Two SPADE-LReLU-conv units plus a (learned when widths differ) shortcut."""

    def __init__(self, *, fin: int, fout: int, label_channels: int = 3, hidden: int = 128) -> None:
        super().__init__()
        fmid = min(fin, fout)
        self.learned_shortcut = fin != fout
        self.conv_0 = nn.Conv2d(fin, fmid, 3, 1, 1)
        self.conv_1 = nn.Conv2d(fmid, fout, 3, 1, 1)
        self.norm_0 = SPADE(channels=fin, label_channels=label_channels, hidden=hidden)
        self.norm_1 = SPADE(channels=fmid, label_channels=label_channels, hidden=hidden)
        if self.learned_shortcut:
            self.conv_s = nn.Conv2d(fin, fout, 1, 1, 0, bias=False)
            self.norm_s = SPADE(channels=fin, label_channels=label_channels, hidden=hidden)

    def forward(self, x: torch.Tensor, degraded: torch.Tensor) -> torch.Tensor:
        shortcut = self.conv_s(self.norm_s(x, degraded)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, degraded), _SLOPE))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, degraded), _SLOPE))
        return shortcut + dx


class SPADEGenerator(nn.Module):
    """Face generator: ``fc`` at S/32, seven SPADE res blocks with five ×2 upsamplings, tanh output.

    ``size`` is the face size S the published options fixed (256, or 512 for the
    high-resolution variant); the seed resolution S/32 comes from it, as in the published code.
    """

    def __init__(self, *, size: int = 256, ngf: int = 64, label_channels: int = 3, hidden: int = 128) -> None:
        super().__init__()
        if size % 32:
            raise ValueError(f"size must be a multiple of 32, got {size}")
        self.size = size
        w = [m * ngf for m in _UP_WIDTHS]
        kw = {"label_channels": label_channels, "hidden": hidden}
        self.fc = nn.Conv2d(label_channels, w[0], 3, 1, 1)
        self.head_0 = SPADEResBlock(fin=w[0], fout=w[0], **kw)
        self.G_middle_0 = SPADEResBlock(fin=w[0], fout=w[0], **kw)
        self.G_middle_1 = SPADEResBlock(fin=w[0], fout=w[0], **kw)
        self.up_0 = SPADEResBlock(fin=w[0], fout=w[1], **kw)
        self.up_1 = SPADEResBlock(fin=w[1], fout=w[2], **kw)
        self.up_2 = SPADEResBlock(fin=w[2], fout=w[3], **kw)
        self.up_3 = SPADEResBlock(fin=w[3], fout=w[4], **kw)
        self.conv_img = nn.Conv2d(w[4], 3, 3, 1, 1)

    def forward(self, degraded: torch.Tensor) -> torch.Tensor:
        """Map the degraded face (N×3×S×S in [-1, 1]) to the restored face in [-1, 1]."""
        seed = self.size // 32
        x = self.fc(_resize(degraded, (seed, seed)))
        x = self.head_0(x, degraded)
        x = _up(x)
        x = self.G_middle_0(x, degraded)
        x = self.G_middle_1(x, degraded)
        for block in (self.up_0, self.up_1, self.up_2, self.up_3):
            x = block(_up(x), degraded)
        return torch.tanh(self.conv_img(F.leaky_relu(x, _SLOPE)))


def _up(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")
