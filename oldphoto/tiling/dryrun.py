"""Peak memory of an untiled run, found by running the networks on tensors that hold no data.

The planner's structural estimate (:mod:`.budget`) is deliberately generous; when a budget is
given it is too generous to keep a photo that fits from being tiled, which costs time. Here
the same networks are rebuilt with PyTorch's fake tensors (shapes and dtypes, no storage)
and run whole at the photo's size, under the run's autocast, while every tensor the
operators create is counted until it is freed. The largest total is the peak of live
tensor bytes the real run reaches; it takes a fraction of a second at any size, and it
follows any architecture's steps without the planner having to know them.

What it cannot see (kernel workspaces, the allocator's slack) is left to the caller's margin.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch
from torch import nn

from oldphoto.devices import autocast


class _LiveBytes:
    """Counts the bytes of every storage an operator returns until its last tensor is freed."""

    def __init__(self) -> None:
        self.refs: dict[int, int] = {}
        self.sizes: dict[int, int] = {}
        self.now = 0
        self.peak = 0

    def add(self, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        key = storage._cdata
        if key not in self.sizes:
            self.sizes[key] = storage.nbytes()
            self.refs[key] = 0
            self.now += self.sizes[key]
            self.peak = max(self.peak, self.now)
        self.refs[key] += 1
        weakref.finalize(tensor, self._release, key)

    def _release(self, key: int) -> None:
        self.refs[key] -= 1
        if self.refs[key] == 0:
            del self.refs[key]
            self.now -= self.sizes.pop(key)


def untiled_peak(
    bundle: nn.ModuleDict, height: int, width: int, precision: str, masked: bool
) -> int | None:
    """Peak bytes of tensors live at once while the bundle runs whole on a height×width photo.

    The input (and mask) are not counted: the caller holds them either way. None when the
    networks cannot be rebuilt or run without data (then the structural estimate stands).
    """
    try:
        from torch._subclasses.fake_tensor import FakeTensorMode
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils._pytree import tree_flatten

        from oldphoto.pipeline import run_networks

        counter = _LiveBytes()

        class Count(TorchDispatchMode):
            def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
                out = func(*args, **(kwargs or {}))
                for t in tree_flatten(out)[0]:
                    if isinstance(t, torch.Tensor):
                        counter.add(t)
                return out

        with FakeTensorMode(allow_non_fake_inputs=True), torch.inference_mode():
            fake = nn.ModuleDict({name: type(net)(**net.config) for name, net in bundle.items()})
            x = torch.empty(1, 3, height, width)
            mask = torch.zeros(1, 1, height, width) if masked else None
            with autocast(torch.device("cpu"), precision), Count():
                out = run_networks(fake, x, mask)
            del out
        return counter.peak
    except Exception:  # noqa: BLE001 - any architecture or operator fake tensors cannot run: no figure
        return None
