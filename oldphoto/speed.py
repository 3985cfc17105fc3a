"""Faster kernels swapped into a loaded model, from outside the networks.

The networks compute as published. When a model is placed on its device
(:func:`oldphoto.devices.place`), :func:`use_fast_kernels` swaps in kernels that compute
the same function faster, wherever the difference cannot be seen in the output:

* **Instance norm through group norm's kernel** (one channel per group): the same
  statistics, 11 ms instead of 34 ms on a 512-channel 1-MP latent in fp32, and in place on
  channels-last maps, where the instance-norm kernel copies each map to NCHW and back. It
  rounds differently, by about one unit in the last place, which an attention block's sharp
  softmax turns into ~4e-4 at the output. So the published kernel is kept, on NCHW maps,
  for the encoder (the latent stays the published numbers bit for bit) and for every norm up
  to the last global step (what attention reads); later norms move the outputs by at most
  3e-5, within the 1e-4 parity tolerance, for 4% of an fp32 restore.
* **Attention heads padded** to a multiple of :data:`HEAD_MULTIPLE` with zero channels,
  which is exact, in reduced precision and on CUDA (see :func:`head_multiple`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from oldphoto.models import RESTORATION_ORDER, restoration_steps
from oldphoto.networks.blocks import InstanceNorm
from oldphoto.networks.nonlocal_block import PartialNonLocal
from oldphoto.networks.steps import Global

#: Reduced-precision and CUDA attention heads are zero-padded to a multiple of this size. The
#: fused kernels tile the head dimension: at 513 the CPU bf16 flash kernel runs about four
#: times slower than at 528 (measured, ``benchmarks/attention.py``), and odd sizes can keep
#: CUDA's fused kernels from being chosen. Zero channels add nothing to q·k and read out
#: zeros, so padding is exact. fp32 on the CPU is not padded: it gains nothing there, and
#: unpadded it keeps the published summation order.
HEAD_MULTIPLE = 16


class FastInstanceNorm(InstanceNorm):
    """Instance norm computed with group norm's kernel, except on NCHW maps where ``published_kernel`` is set.

    Channels-last maps always take group norm's kernel: instance norm's would copy them to
    NCHW and back, and they only occur where the published bits are not kept anyway
    (reduced precision, CUDA, and the fp32 decoder after the last attention).
    """

    def __init__(self, norm: nn.InstanceNorm2d, *, published_kernel: bool) -> None:
        super().__init__(norm.num_features, affine=False, track_running_stats=False, eps=norm.eps)
        self.published_kernel = published_kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or (self.published_kernel and not x.is_contiguous(memory_format=torch.channels_last)):
            return F.instance_norm(x, eps=self.eps)
        return F.group_norm(x, x.shape[1], eps=self.eps)


def head_multiple(device: torch.device, precision: str) -> int:
    """The attention head-size multiple: 1 for fp32 on the CPU, else :data:`HEAD_MULTIPLE`."""
    return 1 if device.type == "cpu" and precision == "fp32" else HEAD_MULTIPLE


def use_fast_kernels(bundle: nn.ModuleDict, device: torch.device, precision: str) -> int:
    """Swap the faster kernels into a restoration bundle; returns how many norms left the published kernel.

    Other bundles (the detector, the face generator) are left as they are.
    """
    if not all(name in bundle for name in RESTORATION_ORDER):
        return 0
    for module in bundle.modules():
        if isinstance(module, PartialNonLocal):
            module.head_multiple = head_multiple(device, precision)
    return choose_norm_kernels(bundle)


def choose_norm_kernels(bundle: nn.ModuleDict) -> int:
    """Give every instance norm after the latent and after the last global step the faster kernel.

    Walks the bundle's steps; returns how many norms switched. The others become
    :class:`FastInstanceNorm` too, keeping the published kernel on NCHW maps.
    """
    steps = restoration_steps(bundle)
    last = len(bundle["encoder"].steps()) - 1
    last = max([last, *(i for i, step in enumerate(steps) if isinstance(step, Global))])
    published = {id(m): i <= last for i, step in enumerate(steps) for m in step.modules() if isinstance(m, InstanceNorm)}
    swaps = [
        (parent, name, FastInstanceNorm(child, published_kernel=published[id(child)]).train(child.training))
        for parent in bundle.modules()
        for name, child in parent.named_children()
        if id(child) in published
    ]
    for parent, name, norm in swaps:
        setattr(parent, name, norm)
    return sum(not norm.published_kernel for _, _, norm in swaps)
