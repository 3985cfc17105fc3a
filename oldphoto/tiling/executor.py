"""Exact tiled execution of the restoration networks, one convolution at a time.

Every convolution is one *pass* over the image: its output is computed tile by tile, each
tile reading exactly the input rectangle its kernel needs (the halo). Padding is resolved
against the *global* image border — reflection by index gathering, zero padding by
padding only where the rectangle leaves the image — so a tile sees the very numbers the
whole-image convolution sees. Outputs go to full-size host stores (:mod:`.store`).

Instance norm needs statistics of the whole map: the pass that produces a convolution's
output also accumulates each channel's mean and variance tile by tile (per-tile float32
moments merged in float64 with Chan's formula), and the normalisation — with the ReLU that
follows it and a residual block's skip sum — is applied *lazily* when the next pass reads
its tiles. So each norm costs no pass of its own. A residual block's output is kept lazy
(``skip + norm(y)``); when that output is itself the skip of the next block, the next
block's first pass writes the summed map out as it reads it.

The global blocks see the whole latent map (H/4 × W/4): scratch mode's partial non-local
block runs whole on the device with its fused attention (no N×N matrix); high-resolution
mode's patch attention runs its residual block and 3×3 fusion conv tiled and only the
nearest-patch search whole. Device memory is bounded by the tile size; host memory by the
arena's budget, beyond which maps live in temporary files.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from oldphoto.networks.blocks import ResBlock
from oldphoto.networks.mapping import MappingPatchAttention, MappingScratch
from oldphoto.networks.nonlocal_block import PartialNonLocal
from oldphoto.networks.patch_attention import PatchAttention, damaged_map, nearest_patch_compose
from oldphoto.tiling.store import Arena, Store, TensorStore
from oldphoto.tiling.transfer import Transfer


class TilingUnsupported(RuntimeError):
    """A network contains a layer the tiled executor does not know how to split."""


@dataclass
class Map:
    """A full-size feature map in a host store, with a per-channel transform still to apply.

    Read value = ``relu?((stored − mean) · rstd) + skip`` (each part optional). ``skip`` never
    has a skip of its own, so a read costs at most two store reads.
    """

    store: Store
    mean: torch.Tensor | None = None
    rstd: torch.Tensor | None = None
    relu: bool = False
    skip: Map | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.store.shape

    @property
    def plain(self) -> bool:
        return self.mean is None and not self.relu and self.skip is None


class Moments:
    """Per-channel mean and biased variance of a map, accumulated tile by tile (Chan's merge)."""

    def __init__(self) -> None:
        self.n = 0
        self.mean: torch.Tensor | None = None
        self.m2: torch.Tensor | None = None

    def add(self, tile: torch.Tensor) -> None:
        """Fold in a 1×C×h×w tile.

        The per-tile statistics come from group norm's kernel with one channel per group and
        eps 0 (exactly instance norm's statistics): one pass in either memory layout, several
        times faster than ``var_mean`` on the CPU; its normalised output is discarded.
        Per-tile variances come back as 1/rstd², exact to float32 rounding.
        """
        c, nb = tile.shape[1], tile.shape[2] * tile.shape[3]
        t = tile.float()
        if not (t.is_contiguous() or t.is_contiguous(memory_format=torch.channels_last)):
            t = t.contiguous(memory_format=torch.channels_last)
        _, mu, rstd = torch.native_group_norm(t, None, None, 1, c, nb, c, 0.0)
        mu, var = mu.reshape(c), rstd.reshape(c).double().pow(-2)
        mu, m2 = mu.double(), var * nb
        if self.n == 0:
            self.n, self.mean, self.m2 = nb, mu, m2
            return
        n = self.n + nb
        delta = mu - self.mean
        self.mean = self.mean + delta * (nb / n)
        self.m2 = self.m2 + m2 + delta * delta * (self.n * nb / n)
        self.n = n

    def normaliser(self, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, 1/sqrt(var + eps)) as float32, what instance norm applies."""
        assert self.mean is not None and self.m2 is not None
        return self.mean.float(), torch.rsqrt(self.m2 / self.n + eps).float()


def tile_grid(height: int, width: int, side: int) -> Iterator[tuple[int, int, int, int]]:
    """Raster-order tiles ``(y0, y1, x0, x1)`` of side ``side`` covering a height×width map."""
    for y0 in range(0, height, side):
        for x0 in range(0, width, side):
            yield y0, min(y0 + side, height), x0, min(x0 + side, width)


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
    """Runs a mode's encoder → mapping → decoder pass by pass with tiles of ``tile`` image pixels."""

    def __init__(
        self,
        *,
        device: torch.device,
        tile: int,
        image_size: tuple[int, int],
        arena: Arena,
        tick: Callable[[], None] = lambda: None,
        patch_search_on_host: bool = False,
    ) -> None:
        self.device = device
        self.tile = tile
        self.image_height = image_size[0]
        self.arena = arena
        self.transfer = Transfer(device)
        self.tick = tick
        self.search_device = torch.device("cpu") if patch_search_on_host else device

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

    # -- containers ------------------------------------------------------------------------

    def run_sequential(self, seq: nn.Sequential, m: Map, *, keep_input: bool = False) -> tuple[Map, Map | None]:
        """Run a Sequential of pads, convs, norms, activations and residual blocks over ``m``.

        With ``keep_input`` (and a lazy-sum input) the first pass also writes its input out as
        a plain map, returned second.
        """
        mods = list(seq)
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
            elif isinstance(mod, ResBlock):
                m = self.res_block(mod, m)
                i += 1
                continue
            elif isinstance(mod, nn.Sequential):
                m, _ = self.run_sequential(mod, m)
                i += 1
                continue
            elif isinstance(mod, nn.InstanceNorm2d):
                m = self.normalise(m, mod)
                i += 1
                continue
            elif isinstance(mod, nn.ReLU):
                m = replace(m, relu=True) if m.skip is None and not m.relu else replace(self.elementwise_pass(m)[0], relu=True)
                i += 1
                continue
            elif isinstance(mod, nn.Tanh):
                m, _ = self.elementwise_pass(m, torch.tanh)
                i += 1
                continue
            else:
                raise TilingUnsupported(f"layer {type(mod).__name__} cannot be tiled")
            nxt = mods[i + 1] if i + 1 < len(mods) else None
            stats = isinstance(nxt, nn.InstanceNorm2d) and not nxt.affine and not nxt.track_running_stats
            post = torch.tanh if isinstance(nxt, nn.Tanh) else None
            keep = keep_input and first and m.skip is not None
            out, moments, k = self.conv_pass([m], conv, pad, mode, stats=stats, post=post, keep_input=keep)
            kept = k if keep else kept
            first = False
            m = out
            i += 1
            if stats:
                assert moments is not None
                mean, rstd = moments.normaliser(nxt.eps)
                m = Map(out.store, mean.to(self.device), rstd.to(self.device))
                i += 1
            elif post is not None:
                i += 1
        return m, kept

    def normalise(self, m: Map, norm: nn.InstanceNorm2d) -> Map:
        """Instance norm of a map not produced by a convolution of this pass (fallback)."""
        if norm.affine or norm.track_running_stats:
            raise TilingUnsupported(f"{norm}: only instance norm without affine or running statistics is tiled")
        plain, moments = self.elementwise_pass(m)
        mean, rstd = moments.normaliser(norm.eps)
        return Map(plain.store, mean.to(self.device), rstd.to(self.device))

    def res_block(self, block: ResBlock, x: Map) -> Map:
        """``x + conv_block(x)``, kept lazy: the sum is formed when the result is read."""
        y, kept = self.run_sequential(block.conv_block, x, keep_input=True)
        if x.skip is not None:
            x = kept if kept is not None else self.elementwise_pass(x)[0]
        if y.skip is not None or y.relu:
            y = self.elementwise_pass(y)[0]
        return Map(y.store, y.mean, y.rstd, False, skip=x)

    # -- global blocks ---------------------------------------------------------------------

    def non_local(self, block: PartialNonLocal, m: Map, mask: torch.Tensor) -> Map:
        """The partial non-local block, run whole on the latent map (fused attention, no N×N)."""
        y = block(self.whole(m, self.device), mask.to(self.device))
        self.tick()
        return self.ram_map(y[0])

    def patch_attention(self, block: PatchAttention, z: Map, mask: torch.Tensor) -> Map:
        """Patch attention: residual block and fusion conv tiled, nearest-patch search whole."""
        x, _ = self.run_sequential(block.res_block, z)
        _, h, w = z.shape
        mb = damaged_map(mask.to("cpu", torch.float32), (h, w))
        xs = self.whole(x, self.search_device)
        composed = nearest_patch_compose(xs[0], mb[0].to(xs.device), block.patch, block.threshold)
        composed_map = self.ram_map(composed)
        del xs, composed, x
        self.tick()
        out, _, _ = self.conv_pass([z, composed_map, self.ram_map(mb[0])], block.F_Combine, 1, "zero")
        return out

    def mapping(self, net: nn.Module, m: Map, mask: torch.Tensor | None) -> Map:
        """Run one of the three mapping networks over the latent map."""
        if isinstance(net, nn.Sequential):
            return self.run_sequential(net, m)[0]
        if mask is None:
            raise TilingUnsupported(f"{type(net).__name__} needs a damage mask")
        if isinstance(net, MappingScratch):
            m = self.run_sequential(net.before_NL, m)[0]
            m = self.non_local(net.NL, m, mask)
            return self.run_sequential(net.after_NL, m)[0]
        if isinstance(net, MappingPatchAttention):
            m = self.run_sequential(net.before_NL, m)[0]
            m = self.patch_attention(net.NL_scale_1, m, mask)
            m = self.run_sequential(net.res_block_1, m)[0]
            m = self.patch_attention(net.NL_scale_2, m, mask)
            m = self.run_sequential(net.res_block_2, m)[0]
            m = self.patch_attention(net.NL_scale_3, m, mask)
            return self.run_sequential(net.after_NL, m)[0]
        raise TilingUnsupported(f"mapping {type(net).__name__} cannot be tiled")

    def run(self, bundle: nn.ModuleDict, x: Map, mask: torch.Tensor | None) -> Map:
        """Encoder → mapping → decoder; returns the decoder's output map (in [−1, 1])."""
        latent = self.run_sequential(bundle["encoder"], x)[0]
        mapped = self.mapping(bundle["mapping"], latent, mask)
        del latent
        out = self.run_sequential(bundle["decoder"], mapped)[0]
        return out if out.plain else self.elementwise_pass(out)[0]


def count_steps(bundle: nn.ModuleDict) -> tuple[int, int]:
    """(tiled passes, whole-map steps) the executor makes for ``bundle``, for progress totals."""
    passes, whole = 0, 0
    skip: set[int] = set()
    for mod in bundle.modules():
        if id(mod) in skip:
            continue
        if isinstance(mod, PartialNonLocal):
            whole += 1
            skip.update(id(sub) for sub in mod.modules())
        elif isinstance(mod, PatchAttention):
            whole += 1
        elif isinstance(mod, (nn.Conv2d, nn.ConvTranspose2d)):
            passes += 1
    return passes, whole


def tiles_per_pass(height: int, width: int, tile: int) -> int:
    """How many tiles one pass over a height×width image takes."""
    return math.ceil(height / tile) * math.ceil(width / tile)
