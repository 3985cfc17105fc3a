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
from oldphoto.networks.steps import Global, Step


def clear_positions(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Return v (B×1×h×w): 1 where the latent position is entirely clear of damage.

    ``mask`` is B×1×H×W at image size (1 = damaged). A position counts as damaged when the
    bilinear downsample is > 0 anywhere, or the nearest one says damaged.
    """
    mb = F.interpolate(mask, size=size, mode="bilinear", align_corners=False)
    mb = (mb > 0).to(mask.dtype)
    mn = F.interpolate(1 - mask, size=size, mode="nearest")
    return (1 - mb) * mn


def attention_heads(t: torch.Tensor, weight: torch.Tensor | None = None, multiple: int = 1) -> torch.Tensor:
    """B×C×h×w features to a B×1×N×D attention head: ``[t, 0]``, or ``[t·w, w]`` with weights.

    D is C+1 rounded up to ``multiple``; channels past C+1 are zero.
    """
    b, c = t.shape[:2]
    flat = t.flatten(2).transpose(1, 2)
    out = t.new_empty(b, flat.shape[1], -(-(c + 1) // multiple) * multiple)
    if weight is None:
        out[..., :c] = flat
        out[..., c:] = 0
    else:
        torch.mul(flat, weight, out=out[..., :c])
        out[..., c : c + 1] = weight
        out[..., c + 1 :] = 0
    return out.unsqueeze(1)


def renormalised_attention(
    q: torch.Tensor, k: torch.Tensor, values: torch.Tensor, channels: int | None = None
) -> torch.Tensor:
    """Heads from :func:`attention_heads` to the published y (B×N×C): numerator / max(mass, 1e-12).

    ``channels`` is C; without it the heads are taken to be unpadded (mass in the last channel).
    """
    c = values.shape[-1] - 1 if channels is None else channels
    out = F.scaled_dot_product_attention(q, k, values, scale=1.0).squeeze(1)
    return out[..., :c] / out[..., c : c + 1].clamp_min(1e-12)


class PartialNonLocal(nn.Module):
    """Fills damaged latent positions from similar clear ones (scratch mode's ``NL`` block).

    ``head_multiple`` pads the attention heads to a multiple of it with zero channels, which
    is exact; 1 (no padding) as published. :mod:`oldphoto.speed` sets it at load where the
    fused kernels run faster padded.
    """

    head_multiple: int = 1

    def __init__(self, *, channels: int = 512, n_blocks: int = 3) -> None:
        super().__init__()
        self.g = nn.Conv2d(channels, channels, 1)
        self.W = nn.Conv2d(channels, channels, 1)
        self.theta = nn.Conv2d(channels, channels, 1)
        self.phi = nn.Conv2d(channels, channels, 1)
        self.res_block = nn.Sequential(*[ResBlock(channels) for _ in range(n_blocks)])

    def attend(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Return y (B×C×h×w), the attention read-out for every position.

        Each head is built straight into its padded buffer and dropped as soon as the kernel
        has run, so at 512 channels the block holds about five feature-map copies at its peak.
        """
        b, c, h, w = x.shape
        weights = v.flatten(2).transpose(1, 2)
        theta = self.theta(x)
        q = attention_heads(theta, multiple=self.head_multiple)
        del theta
        k = attention_heads(self.phi(x), multiple=self.head_multiple)
        values = attention_heads(self.g(x), weights, multiple=self.head_multiple)
        y = renormalised_attention(q, k, values, c)
        del q, k, values
        return y.transpose(1, 2).reshape(b, c, h, w)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if mask is None:
            raise ValueError("the partial non-local block needs a damage mask")
        v = clear_positions(mask.to(x.device, x.dtype), x.shape[-2:])
        wy = self.res_block(self.W(self.attend(x, v)))
        return v * x + (1 - v) * wy

    def steps(self) -> list[Step]:
        """One global step: attention needs the whole latent. At its peak it holds about five
        feature-map copies (:meth:`attend`); the planner counts eight."""
        return [Global(self, layers=(self,), floats=8 * self.g.in_channels)]
