"""Each restoration network's order of operations, written once as a list of steps.

A network (or a block inside one) lists its steps over named feature maps; ``"x"`` is what
it receives and what it returns. There are two kinds of step:

* :class:`Local`: layers whose every output pixel reads only a neighbourhood of the input
  (pads, convolutions, instance norms, activations and residual blocks, in order). Reading
  several maps, it works on their channel concatenation.
* :class:`Global`: an operation that needs whole maps and the damage mask (scratch mode's
  non-local attention, high-resolution mode's nearest-patch search).

Three things walk the same list, so a new architecture only has to write its steps:
:func:`run_steps` here is every network's plain forward; :mod:`oldphoto.tiling.executor` runs
Local steps convolution by convolution over tiles and Global steps on whole maps; and
:mod:`oldphoto.tiling.budget` (memory) and :mod:`oldphoto.speed` (norm kernels) read what
each step holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Local:
    """Layers run in order on ``reads`` (channel-concatenated when several), into ``writes``."""

    layers: tuple[nn.Module, ...]
    reads: tuple[str, ...] = ("x",)
    writes: tuple[str, ...] = ("x",)

    def modules(self) -> Iterator[nn.Module]:
        for layer in self.layers:
            yield from layer.modules()


@dataclass(frozen=True)
class Global:
    """``op(*maps, mask)`` on the whole of the ``reads`` maps, returning the ``writes`` maps.

    ``mask`` is the image-size damage mask (B×1×H×W, 1 = damaged, or None), wherever it is;
    ``op`` moves what it needs of it to its maps' device.

    ``layers`` are the modules ``op`` runs (its weights and norms). ``floats`` is its peak
    memory in floats per position of its input, for the planner. ``movable`` says it may run
    in host memory when the device's is short (it is then counted apart from the device's peak).
    ``pointwise`` says each output pixel depends only on the same pixel of the inputs (a skip
    sum), so the tiled executor runs it tile by tile instead of on whole maps.
    """

    op: Callable[..., torch.Tensor | tuple[torch.Tensor, ...]]
    layers: tuple[nn.Module, ...] = ()
    reads: tuple[str, ...] = ("x",)
    writes: tuple[str, ...] = ("x",)
    floats: float = 0.0
    movable: bool = False
    pointwise: bool = False

    def modules(self) -> Iterator[nn.Module]:
        for layer in self.layers:
            yield from layer.modules()


Step = Local | Global


def dead_after(steps: Sequence[Step]) -> list[frozenset[str]]:
    """For each step, the maps it reads that nothing after it reads again (``"x"`` is read at the end)."""
    dead = []
    for i, step in enumerate(steps):
        gone = set()
        for name in step.reads:
            if name in step.writes:
                gone.add(name)
                continue
            for later in steps[i + 1 :]:
                if name in later.reads:
                    break
                if name in later.writes:
                    gone.add(name)
                    break
            else:
                if name != "x":
                    gone.add(name)
        dead.append(frozenset(gone))
    return dead


def run_steps(steps: Sequence[Step], x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Run ``steps`` on ``x``; the plain forward. Global steps also get the image-size damage ``mask``.

    A map is dropped as soon as no later step reads it, so a step's input is freed by its
    first layer.
    """
    maps = {"x": x}
    del x
    for step, dead in zip(steps, dead_after(steps)):
        inputs = [maps.pop(name) if name in dead else maps[name] for name in step.reads]
        if isinstance(step, Local):
            t = inputs[0] if len(inputs) == 1 else torch.cat(inputs, dim=1)
            del inputs
            for layer in step.layers:
                t = layer(t)
            outputs: tuple[torch.Tensor, ...] = (t,)
            del t
        else:
            result = step.op(*inputs, mask)
            del inputs
            outputs = result if isinstance(result, tuple) else (result,)
        maps.update(zip(step.writes, outputs))
    return maps["x"]


def local(layers: nn.Module | Sequence[nn.Module]) -> Local:
    """A Local step over a container's children (or a list of layers), from ``"x"`` to ``"x"``."""
    return Local(tuple(layers.children()) if isinstance(layers, nn.Module) else tuple(layers))
