"""Restore one prepared photo: untiled when it fits the budget, tiled otherwise.

This is the one place :class:`oldphoto.api.Restorer` runs the networks. The tiled path ends
with :func:`finish_map`, the published min–max stretch computed tile by tile over the whole
output (first its global minimum and maximum, then the 8-bit conversion), so no
full-size float copy of the output is made. A residual model (``Prepared.residual``) has no
stretch: each output tile is added to the same tile of the input, which is exact because the
add is pointwise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from oldphoto.devices import autocast
from oldphoto.pipeline import Prepared, finish, run_networks, to_pixels, to_unit
from oldphoto.tiling.budget import Plan, plan
from oldphoto.tiling.executor import TiledExecutor, count_steps
from oldphoto.tiling.maps import Map, tile_grid, tiles_per_pass
from oldphoto.tiling.store import Arena, TensorStore

Progress = Callable[[int, int], None]


def restore_pixels(
    bundle: nn.ModuleDict,
    prepared: Prepared,
    *,
    device: torch.device,
    precision: str = "fp32",
    tile: str | int | None = "auto",
    max_memory: str | int | None = "auto",
    progress: Progress | None = None,
    tmpdir: str | None = None,
    reserved: int = 0,
    chosen: Plan | None = None,
) -> np.ndarray:
    """Run the networks over ``prepared`` and return the H×W×3 uint8 (uint16 for 16-bit) photo (see :mod:`oldphoto.tiling`).

    ``reserved``: host bytes the caller's own buffers take (:func:`~oldphoto.tiling.budget.photo_bytes`).
    ``chosen``: the caller's plan for this shape, when it made one (otherwise it is made here).
    """
    if chosen is None:
        height, width = prepared.x.shape[-2:]
        chosen = plan(
            bundle, height, width, device, tile, max_memory,
            precision=precision, reserved=reserved, masked=prepared.mask is not None,
        )
    with torch.inference_mode(), autocast(device, precision):
        if not chosen.tiled:
            mask = prepared.mask.to(device) if prepared.mask is not None else None
            with _conv_progress(bundle, progress) as total:
                output = run_networks(bundle, prepared.x.to(device), mask)["output"]
            pixels = finish(output, prepared)
            if progress is not None:
                progress(total, total)
            return pixels
        return _restore_tiled(bundle, prepared, chosen, device, progress, tmpdir)


@contextmanager
def _conv_progress(bundle: nn.ModuleDict, progress: Progress | None) -> Iterator[int]:
    """Report an untiled run's progress convolution by convolution; yields the total (convolutions + finish)."""
    convs = [m for m in bundle.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    total = len(convs) + 1
    done = 0

    def tick(*_: object) -> None:
        nonlocal done
        done = min(done + 1, total - 1)
        if progress is not None:
            progress(done, total)

    handles = [conv.register_forward_hook(tick) for conv in convs] if progress is not None else []
    try:
        yield total
    finally:
        for handle in handles:
            handle.remove()


def _restore_tiled(
    bundle: nn.ModuleDict,
    prepared: Prepared,
    chosen: Plan,
    device: torch.device,
    progress: Progress | None,
    tmpdir: str | None,
) -> np.ndarray:
    height, width = prepared.x.shape[-2:]
    passes, whole = count_steps(bundle)
    per_pass = tiles_per_pass(height, width, chosen.tile)
    total = (passes + 1) * per_pass + whole
    done = 0

    def tick() -> None:
        nonlocal done
        done = min(done + 1, total)
        if progress is not None:
            progress(done, total)

    arena = Arena(chosen.host_budget, tmpdir)
    executor = TiledExecutor(
        device=device,
        tile=chosen.tile,
        image_size=(height, width),
        arena=arena,
        tick=tick,
        movable_on_host=chosen.movable_on_host,
    )
    out = executor.run(bundle, Map(TensorStore(prepared.x[0])), prepared.mask)
    pixels = finish_map(out, prepared, chosen.tile, tick)
    if progress is not None:
        progress(total, total)
    return pixels


def finish_map(out: Map, prepared: Prepared, tile: int, tick: Callable[[], None] = lambda: None) -> np.ndarray:
    """:func:`oldphoto.pipeline.finish` over a stored output map, tile by tile, bit for bit.

    The same float32 operations in the same order per pixel; the minimum and maximum are
    taken over the photo's own pixels first, as ``finish`` takes them over its crop.
    """
    h, w = prepared.size
    dtype = np.uint8 if prepared.top == 255 else np.uint16
    if prepared.residual:
        pixels = np.empty((h, w, 3), dtype=dtype)
        for y0, y1, x0, x1 in tile_grid(h, w, tile):
            y = to_unit(out.store.read(y0, y1, x0, x1), prepared.x[0, :, y0:y1, x0:x1], True)
            pixels[y0:y1, x0:x1] = to_pixels(y, prepared.top)
            tick()
        return pixels
    lo = torch.tensor(float("inf"))
    hi = torch.tensor(float("-inf"))
    for y0, y1, x0, x1 in tile_grid(h, w, tile):
        y = to_unit(out.store.read(y0, y1, x0, x1), None, False)
        lo, hi = torch.minimum(lo, y.min()), torch.maximum(hi, y.max())
    span = torch.clamp(hi - lo, min=1e-5)
    pixels = np.empty((h, w, 3), dtype=dtype)
    for y0, y1, x0, x1 in tile_grid(h, w, tile):
        y = to_unit(out.store.read(y0, y1, x0, x1), None, False)
        y = (y - lo) / span
        pixels[y0:y1, x0:x1] = to_pixels(y, prepared.top)
        tick()
    return pixels
