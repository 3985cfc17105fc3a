"""Differentiable stand-ins for inference kernels that autograd cannot go through.

The partial non-local block's inference ``attend`` builds its attention heads with ``out=``
kernels (to keep a 1-MP scan's memory down), which autograd refuses. Training gives each
block an ``attend`` computing the same published formula with ordinary ops on the same
parameters, so the state dict, and the restore path that later loads it, are unchanged.
``tests/test_training_scratch.py`` checks both agree.
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from torch import nn

from oldphoto.networks.nonlocal_block import PartialNonLocal


def _attend(self: PartialNonLocal, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """y_i = Σ_j A_ij v_j g_j / max(Σ_j A_ij v_j, 1e-12), A = softmax_j(θ_i·φ_j)."""
    b, c, h, w = x.shape

    def heads(t: torch.Tensor) -> torch.Tensor:
        return t.flatten(2).transpose(1, 2)

    weights = heads(v)
    zero = weights.new_zeros(weights.shape)
    q = torch.cat([heads(self.theta(x)), zero], -1)[:, None]
    k = torch.cat([heads(self.phi(x)), zero], -1)[:, None]
    values = torch.cat([heads(self.g(x)) * weights, weights], -1)[:, None]
    out = F.scaled_dot_product_attention(q, k, values, scale=1.0)[:, 0]
    y = out[..., :c] / out[..., c:].clamp_min(1e-12)
    return y.transpose(1, 2).reshape(b, c, h, w)


def make_trainable(module: nn.Module) -> nn.Module:
    """Give every partial non-local block in ``module`` the differentiable ``attend``."""
    for m in module.modules():
        if isinstance(m, PartialNonLocal):
            m.attend = types.MethodType(_attend, m)  # type: ignore[method-assign]
    return module
