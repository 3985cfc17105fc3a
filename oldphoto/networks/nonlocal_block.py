"""The partial non-local block of scratch mode, computed without the N×N matrix.

Published computation, with ``A = softmax_j(θ_i·φ_j)`` and ``v_j`` = 1 where latent
position j is clear of damage::

    y_i = Σ_j A_ij v_j g_j / max(Σ_j A_ij v_j, 1e-12)

Both the numerator and ``s_i = Σ_j A_ij v_j`` are plain (unmasked) attention outputs: they
are attention over all keys with values ``[v_j g_j, v_j]``. So one call of a fused,
memory-efficient attention kernel with one extra value channel gives both, and the division
by ``max(s_i, 1e-12)`` then reproduces the published result exactly — including its edge
cases (no clear position at all gives y = 0; queries whose clear keys carry almost no
softmax mass are damped exactly as the published clamp damps them), which a kernel masking
invalid keys to -inf would not. q and k get one zero channel so all three share a head size,
which the fused CPU and CUDA kernels require.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from oldphoto.networks.blocks import ResBlock


def clear_positions(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Return v (B×1×h×w): 1 where the latent position is entirely clear of damage.

    ``mask`` is B×1×H×W at image size (1 = damaged). A position counts as damaged when the
    bilinear downsample is > 0 anywhere, or the nearest one says damaged.
    """
    mb = F.interpolate(mask, size=size, mode="bilinear", align_corners=False)
    mb = (mb > 0).to(mask.dtype)
    mn = F.interpolate(1 - mask, size=size, mode="nearest")
    return (1 - mb) * mn


def renormalised_attention(q: torch.Tensor, k: torch.Tensor, g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The published renormalised masked attention for B×N×C q, k, g and B×N×1 weights v."""
    zeros = q.new_zeros(q.shape[:-1] + (1,))
    q1 = torch.cat([q, zeros], dim=-1).unsqueeze(1)
    k1 = torch.cat([k, zeros], dim=-1).unsqueeze(1)
    values = torch.cat([g * v, v], dim=-1).unsqueeze(1)
    out = F.scaled_dot_product_attention(q1, k1, values, scale=1.0).squeeze(1)
    numerator, mass = out[..., :-1], out[..., -1:]
    return numerator / mass.clamp_min(1e-12)


class PartialNonLocal(nn.Module):
    """Fills damaged latent positions from similar clear ones (scratch mode's ``NL`` block)."""

    def __init__(self, *, channels: int = 512, n_blocks: int = 3) -> None:
        super().__init__()
        self.g = nn.Conv2d(channels, channels, 1)
        self.W = nn.Conv2d(channels, channels, 1)
        self.theta = nn.Conv2d(channels, channels, 1)
        self.phi = nn.Conv2d(channels, channels, 1)
        self.res_block = nn.Sequential(*[ResBlock(channels) for _ in range(n_blocks)])

    def attend(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Return y (B×C×h×w), the attention read-out for every position."""
        b, c, h, w = x.shape
        q = self.theta(x).flatten(2).transpose(1, 2)
        k = self.phi(x).flatten(2).transpose(1, 2)
        g = self.g(x).flatten(2).transpose(1, 2)
        y = renormalised_attention(q, k, g, v.flatten(2).transpose(1, 2))
        return y.transpose(1, 2).reshape(b, c, h, w)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        v = clear_positions(mask.to(x.dtype), x.shape[-2:])
        wy = self.res_block(self.W(self.attend(x, v)))
        return v * x + (1 - v) * wy
