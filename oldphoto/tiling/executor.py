"""Exact tiled execution of the restoration networks' steps, one convolution at a time.

It walks the same steps as the networks' plain forward (:mod:`oldphoto.networks.steps`).
Every convolution of a Local step is one *pass* over the image: its output is computed tile
by tile, each tile reading exactly the input rectangle its kernel needs (the halo). Padding
is resolved against the *global* image border — reflection by index gathering, zero padding
by padding only where the rectangle leaves the image — so a tile sees the very numbers the
whole-image convolution sees. Outputs go to full-size host stores (:mod:`.store`).

Instance norm needs statistics of the whole map: the pass that produces a convolution's
output also accumulates each channel's mean and variance tile by tile (per-tile float32
moments merged in float64 with Chan's formula), and the normalisation — with the ReLU that
follows it and a residual block's skip sum — is applied *lazily* when the next pass reads
its tiles. So each norm costs no pass of its own. A residual block's output is kept lazy
(``skip + norm(y)``); when that output is itself the skip of the next block, the next
block's first pass writes the summed map out as it reads it.

A pointwise global step (the lite mapping's latent skip sum) runs tile by tile like a pass.
Other global steps see whole maps (the latent, H/4 × W/4): scratch mode's partial non-local
block runs whole on the device with its fused attention (no N×N matrix); high-resolution
mode's nearest-patch search runs whole too, on the host when the plan says the device is
short, while the patch attention's residual block and fusion conv are Local steps and run
tiled. Device memory is bounded by the tile size; host memory by the arena's budget, beyond
which maps live in temporary files.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from oldphoto.models import restoration_steps
from oldphoto.networks.blocks import ResBlock
from oldphoto.networks.steps import Global, Local, Step, dead_after
from oldphoto.tiling.maps import Map, Moments, tile_grid
from oldphoto.tiling.store import Arena, TensorStore
from oldphoto.tiling.transfer import Transfer

__all__ = ["Map", "TiledExecutor", "TilingUnsupported", "count_steps", "tile_grid"]


class TilingUnsupported(RuntimeError):
    """A network contains a layer the tiled executor does not know how to split."""


def _axis(start: int, stop: int, size: int, mode: str) -> tuple[int, int, int, int]:
    """Resolve rows (or columns) ``[start, stop)`` against a border of ``size``.

    Returns the in-image range to read and how much to pad before and after it. Padding
    only ever happens at the image border, so reflecting the in-image range there is the
    global reflection (rows −1, −2 mirror rows 1, 2, which the range holds).
    """
    lo, hi = max(start, 0), min(stop, size)
    if (lo, hi) != (start, stop):
        if mode == "none":
            raise TilingUnsupported(f"rectangle [{start}, {stop}) leaves a map of size {size} with no padding")
        if mode == "reflect" and max(lo - start, stop - hi) >= hi - lo:
            raise TilingUnsupported(f"reflection by {max(lo - start, stop - hi)} needs more than {hi - lo} rows")
    return lo, hi, lo - start, stop - hi


def _cat(tiles: list[torch.Tensor]) -> torch.Tensor:
    return tiles[0] if len(tiles) == 1 else torch.cat(tiles, dim=1)


def _ceil_div(a: int, b: int) -> int:
    return -((-a) // b)


class TiledExecutor:
    """Runs a restoration bundle's steps pass by pass with tiles of ``tile`` image pixels."""

    def __init__(
        self,
        *,
        device: torch.device,
        tile: int,
        image_size: tuple[int, int],
        arena: Arena,
        tick: Callable[[], None] = lambda: None,
        movable_on_host: bool = False,
    ) -> None:
        self.device = device
        self.tile = tile
        self.image_height = image_size[0]
        self.arena = arena
        self.transfer = Transfer(device)
        self.tick = tick
        self.movable_device = torch.device("cpu") if movable_on_host else device

    # -- reading ---------------------------------------------------------------------------

    def _fetch(self, m: Map, y0: int, y1: int, x0: int, x1: int) -> torch.Tensor:
        """The in-image rectangle of ``m`` on the device, transform applied (1×C×h×w)."""
        t = self.transfer.to_device(m.store.read(y0, y1, x0, x1)).unsqueeze(0)
        if m.mean is not None:
            t = (t - m.mean.view(1, -1, 1, 1)).mul_(m.rstd.view(1, -1, 1, 1))
            if m.relu:
                t.relu_()
        elif m.relu:
            t = torch.relu(t)
        if m.skip is not None:
            t = t + self._fetch(m.skip, y0, y1, x0, x1)
        return t

    def read(self, m: Map, rows: tuple[int, int], cols: tuple[int, int], mode: str) -> torch.Tensor:
        """Rows × cols of ``m`` in global coordinates, padding resolved at the image border."""
        _, h, w = m.shape
        y0, y1, top, bottom = _axis(rows[0], rows[1], h, mode)
        x0, x1, left, right = _axis(cols[0], cols[1], w, mode)
        t = self._fetch(m, y0, y1, x0, x1)
        if top or bottom or left or right:
            t = F.pad(t, (left, right, top, bottom), mode="reflect" if mode == "reflect" else "constant")
        return t

    def whole(self, m: Map, device: torch.device) -> torch.Tensor:
        """The whole map, transform applied, as a 1×C×H×W float32 tensor on ``device``."""
        _, h, w = m.shape
        out = torch.empty(m.shape, device=device)
        side = max(1, self.tile * h // self.image_height)
        for y0, y1, x0, x1 in tile_grid(h, w, side):
            out[:, y0:y1, x0:x1] = self.read(m, (y0, y1), (x0, x1), "none")[0].float()
        return out.unsqueeze(0)

    def ram_map(self, tensor: torch.Tensor) -> Map:
        """Wrap a C×H×W tensor (any device) as a plain map in RAM, counted against the arena."""
        store = TensorStore(tensor.detach().to("cpu", torch.float32))
        self.arena.track(store)
        return Map(store)

    # -- one convolution over the image ------------------------------------------------------

    def conv_pass(
        self,
        inputs: list[Map],
        conv: nn.Conv2d | nn.ConvTranspose2d,
        pad: int,
        mode: str,
        *,
        stats: bool = False,
        post: Callable[[torch.Tensor], torch.Tensor] | None = None,
        keep_input: bool = False,
    ) -> tuple[Map, Moments | None, Map | None]:
        """Compute ``conv`` (after padding ``pad`` in ``mode``) over channel-concatenated ``inputs``.

        Returns the output map, its moments when ``stats``, and with ``keep_input`` the
        (single, stride-1 same-size) input written out as a plain map while it was read.
        """
        _, h, w = inputs[0].shape
        k, s = conv.kernel_size[0], conv.stride[0]
        transposed = isinstance(conv, nn.ConvTranspose2d)
        if conv.kernel_size[0] != conv.kernel_size[1] or conv.stride[0] != conv.stride[1] or conv.dilation != (1, 1):
            raise TilingUnsupported(f"{conv}: only square kernels and strides without dilation are tiled")
        if transposed:
            if conv.output_padding != (0, 0):
                raise TilingUnsupported(f"{conv}: output padding is not tiled")
            ho, wo = (h - 1) * s - 2 * pad + k, (w - 1) * s - 2 * pad + k
        else:
            ho, wo = (h + 2 * pad - k) // s + 1, (w + 2 * pad - k) // s + 1
        if keep_input and (len(inputs) != 1 or transposed or s != 1 or 2 * pad != k - 1):
            raise TilingUnsupported("only a single stride-1 same-size input can be written out while read")
        layout = conv.weight.is_contiguous(memory_format=torch.channels_last) and conv.weight.dim() == 4
        out_store = self.arena.allocate(conv.out_channels, ho, wo, channels_last=layout)
        kept = self.arena.allocate(inputs[0].shape[0], h, w, channels_last=layout) if keep_input else None
        moments = Moments() if stats else None
        fmt = torch.channels_last if layout else torch.contiguous_format
        side = max(1, self.tile * ho // self.image_height)
        for a, b, c, d in tile_grid(ho, wo, side):
            if transposed:
                ya, yb = max(0, _ceil_div(a + pad - k + 1, s)), min(h, (b - 1 + pad) // s + 1)
                xa, xb = max(0, _ceil_div(c + pad - k + 1, s)), min(w, (d - 1 + pad) // s + 1)
                t = _cat([self.read(m, (ya, yb), (xa, xb), "none") for m in inputs])
                y = F.conv_transpose2d(t.contiguous(memory_format=fmt), conv.weight, conv.bias, s)
                oy, ox = ya * s - pad, xa * s - pad
                y = y[:, :, a - oy : b - oy, c - ox : d - ox]
            else:
                rows, cols = (a * s - pad, (b - 1) * s - pad + k), (c * s - pad, (d - 1) * s - pad + k)
                t = _cat([self.read(m, rows, cols, mode) for m in inputs])
                if kept is not None:
                    self.transfer.write(kept, a, c, t[0, :, pad : pad + b - a, pad : pad + d - c])
                y = F.conv2d(t.contiguous(memory_format=fmt), conv.weight, conv.bias, s, 0, 1, conv.groups)
            del t
            if post is not None:
                y = post(y)
            if moments is not None:
                moments.add(y)
            self.transfer.write(out_store, a, c, y[0])
            self.tick()
        self.transfer.flush()
        return Map(out_store), moments, (Map(kept) if kept is not None else None)

    def elementwise_pass(self, m: Map, fn: Callable[[torch.Tensor], torch.Tensor] | None = None) -> tuple[Map, Moments]:
        """Write ``fn(m)`` out as a plain map (the fallback where a transform cannot stay lazy)."""
        c, h, w = m.shape
        store = self.arena.allocate(c, h, w, channels_last=True)
        moments = Moments()
        side = max(1, self.tile * h // self.image_height)
        for y0, y1, x0, x1 in tile_grid(h, w, side):
            t = self.read(m, (y0, y1), (x0, x1), "none")
            if fn is not None:
                t = fn(t)
            moments.add(t)
            self.transfer.write(store, y0, x0, t[0])
        self.transfer.flush()
        return Map(store), moments

    # -- local layers ------------------------------------------------------------------------

    def run_layers(
        self, layers: Sequence[nn.Module], inputs: list[Map], *, keep_input: bool = False
    ) -> tuple[Map, Map | None]:
        """Run pads, convs, norms, activations and residual blocks in order over ``inputs``.

        Several inputs are read as their channel concatenation by the first convolution. With
        ``keep_input`` (and a lazy-sum input) the first pass also writes its input out as a
        plain map, returned second.
        """
        mods = list(layers)
        kept: Map | None = None
        first = True
        i = 0
        while i < len(mods):
            mod = mods[i]
            if isinstance(mod, nn.ReflectionPad2d) and i + 1 < len(mods) and isinstance(mods[i + 1], nn.Conv2d):
                conv, pad, mode = mods[i + 1], int(mod.padding[0]), "reflect"
                if len(set(mod.padding)) != 1 or any(conv.padding):
                    raise TilingUnsupported(f"{mod} before {conv}: uneven or doubled padding")
                i += 1
            elif isinstance(mod, (nn.Conv2d, nn.ConvTranspose2d)):
                conv, pad, mode = mod, int(mod.padding[0]), "zero"
                if mod.padding[0] != mod.padding[1] or (isinstance(mod, nn.Conv2d) and mod.padding_mode != "zeros"):
                    raise TilingUnsupported(f"{mod}: only even zero padding is tiled")
            else:
                if len(inputs) != 1:
                    raise TilingUnsupported(f"{type(mod).__name__} cannot read several maps; only a convolution can")
                inputs = [self.single_layer(mod, inputs[0])]
                i += 1
                continue
            nxt = mods[i + 1] if i + 1 < len(mods) else None
            stats = isinstance(nxt, nn.InstanceNorm2d) and not nxt.affine and not nxt.track_running_stats
            post = torch.tanh if isinstance(nxt, nn.Tanh) else None
            keep = keep_input and first and inputs[0].skip is not None
            out, moments, k = self.conv_pass(inputs, conv, pad, mode, stats=stats, post=post, keep_input=keep)
            kept = k if keep else kept
            first = False
            inputs = [out]
            i += 1
            if stats:
                assert moments is not None
                mean, rstd = moments.normaliser(nxt.eps)
                inputs = [Map(out.store, mean.to(self.device), rstd.to(self.device))]
                i += 1
            elif post is not None:
                i += 1
        if len(inputs) != 1:
            raise TilingUnsupported("several maps were read by no convolution")
        return inputs[0], kept

    def single_layer(self, mod: nn.Module, m: Map) -> Map:
        """A layer that is not a convolution: kept lazy where it can be, else one elementwise pass."""
        if isinstance(mod, ResBlock):
            return self.res_block(mod, m)
        if isinstance(mod, nn.Sequential):
            return self.run_layers(list(mod), [m])[0]
        if isinstance(mod, nn.InstanceNorm2d):
            return self.normalise(m, mod)
        if isinstance(mod, nn.ReLU):
            return replace(m if m.skip is None and not m.relu else self.elementwise_pass(m)[0], relu=True)
        if isinstance(mod, nn.Tanh):
            return self.elementwise_pass(m, torch.tanh)[0]
        raise TilingUnsupported(f"layer {type(mod).__name__} cannot be tiled")

    def normalise(self, m: Map, norm: nn.InstanceNorm2d) -> Map:
        """Instance norm of a map not produced by a convolution of this pass (fallback)."""
        if norm.affine or norm.track_running_stats:
            raise TilingUnsupported(f"{norm}: only instance norm without affine or running statistics is tiled")
        plain, moments = self.elementwise_pass(m)
        mean, rstd = moments.normaliser(norm.eps)
        return Map(plain.store, mean.to(self.device), rstd.to(self.device))

    def res_block(self, block: ResBlock, x: Map) -> Map:
        """``x + conv_block(x)``, kept lazy: the sum is formed when the result is read."""
        y, kept = self.run_layers(list(block.conv_block), [x], keep_input=True)
        if x.skip is not None:
            x = kept if kept is not None else self.elementwise_pass(x)[0]
        if y.skip is not None or y.relu:
            y = self.elementwise_pass(y)[0]
        return Map(y.store, y.mean, y.rstd, False, skip=x)

    # -- steps -------------------------------------------------------------------------------

    def pointwise_step(self, step: Global, inputs: list[Map]) -> list[Map]:
        """A pointwise global step (a skip sum) tile by tile into new maps: no whole map is ever held."""
        c, h, w = inputs[0].shape
        side = max(1, self.tile * h // self.image_height)
        stores: list = []
        for y0, y1, x0, x1 in tile_grid(h, w, side):
            result = step.op(*(self.read(m, (y0, y1), (x0, x1), "none") for m in inputs), None)
            outputs = result if isinstance(result, tuple) else (result,)
            if not stores:
                stores = [self.arena.allocate(t.shape[1], h, w, channels_last=True) for t in outputs]
            for store, t in zip(stores, outputs):
                self.transfer.write(store, y0, x0, t[0])
            self.tick()
        self.transfer.flush()
        return [Map(store) for store in stores]

    def global_step(self, step: Global, inputs: list[Map], mask: torch.Tensor | None) -> list[Map]:
        """A global step on whole maps: on the device, or on the host for a movable step when the plan says so."""
        if step.pointwise:
            return self.pointwise_step(step, inputs)
        device = self.movable_device if step.movable else self.device
        whole = [self.whole(m, device) for m in inputs]
        del inputs
        result = step.op(*whole, mask)
        del whole
        self.tick()
        outputs = result if isinstance(result, tuple) else (result,)
        return [self.ram_map(t[0]) for t in outputs]

    def run_steps(self, steps: Sequence[Step], x: Map, mask: torch.Tensor | None) -> Map:
        """Run ``steps`` over ``x`` as :func:`oldphoto.networks.steps.run_steps` does, tile by tile."""
        maps = {"x": x}
        del x
        for step, dead in zip(steps, dead_after(steps)):
            inputs = [maps.pop(name) if name in dead else maps[name] for name in step.reads]
            if isinstance(step, Local):
                outputs = [self.run_layers(step.layers, inputs)[0]]
            else:
                outputs = self.global_step(step, inputs, mask)
            del inputs
            maps.update(zip(step.writes, outputs))
            del outputs
        return maps["x"]

    def run(self, bundle: nn.ModuleDict, x: Map, mask: torch.Tensor | None) -> Map:
        """Encoder → mapping → decoder; returns the decoder's output map (in [−1, 1])."""
        out = self.run_steps(restoration_steps(bundle), x, mask)
        return out if out.plain else self.elementwise_pass(out)[0]


def count_steps(bundle: nn.ModuleDict) -> tuple[int, int]:
    """(tiled passes, whole-map steps) the executor makes for ``bundle``, for progress totals."""
    steps = restoration_steps(bundle)
    passes = sum(
        isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) for step in steps if isinstance(step, Local) for m in step.modules()
    )
    pointwise = sum(isinstance(step, Global) and step.pointwise for step in steps)
    return passes + pointwise, sum(isinstance(step, Global) and not step.pointwise for step in steps)
