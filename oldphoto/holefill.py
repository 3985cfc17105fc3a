"""Hole fills: what damaged pixels hold before the scratch networks see them.

``white`` paint is the published input (:func:`oldphoto.pipeline.paint_holes`). The bundled lite
scratch model starts from a fill instead, so its small network only has to sharpen a plausible
guess: ``smooth`` (:func:`fill_holes`, a pull-push pyramid: fast, a little blocky) or
``harmonic`` (:func:`fill_harmonic`, that pull-push fill relaxed into the smoothest surface that
meets the undamaged rims, i.e. Laplace's equation on the holes).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

#: Red-black over-relaxation sweeps of :func:`fill_harmonic` and their factor: on issue 25's
#: damage (kodak24, hole widths 1-40 px from a pull-push start) 60 sweeps at 1.9 land within
#: 0.01 dB of a converged solve (benchmarks/scratch_quality.py, ``harmonic``).
SWEEPS, OMEGA = 60, 1.9


def _pull_push(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Every pixel's estimate from weighted colours ``x`` (already multiplied by ``w``) and weights ``w``.

    A pixel with any weight keeps its weighted mean; one with none takes the bilinear upsample
    of the next coarser level's estimate (2×2 sums), so holes of any size fill from their rims.
    """
    est = x / w.clamp_min(1e-12)
    h, wd = x.shape[-2:]
    if bool((w > 0).all()):
        return est
    if h == 1 and wd == 1:
        return torch.full_like(est, 128.0)  # nothing known at all: mid-grey
    coarse = _pull_push(F.avg_pool2d(x, 2, ceil_mode=True), F.avg_pool2d(w, 2, ceil_mode=True))
    return torch.where(w > 0, est, F.interpolate(coarse, size=(h, wd), mode="bilinear", align_corners=False))


def fill_holes(pixels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Fill damaged pixels (``mask`` ≥ 128) smoothly from the undamaged ones around them; keep the rest.

    The pull-push fill (``pipeline.hole_fill: "smooth"``, not published): a small network that
    starts from a plausible fill only has to sharpen it, where from white paint it must learn to
    undo the paint, and undoes too little.
    """
    if pixels.dtype == np.uint16:  # the fill works on the 0..255 scale (its mid-grey), in float64 to keep every level
        x = torch.from_numpy(pixels / 257.0).permute(2, 0, 1)[None]
    else:
        x = torch.from_numpy(np.array(pixels, dtype=np.uint8)).permute(2, 0, 1)[None].float()  # a writable copy
    w = torch.from_numpy(np.asarray(mask) < 128)[None, None].to(x.dtype)
    filled = _pull_push(x * w, w)[0].permute(1, 2, 0)  # an undamaged pixel keeps x·1/1, exactly x
    if pixels.dtype == np.uint16:
        return (filled * 257.0).round_().clamp_(0, 65535).numpy().astype(np.uint16)
    return filled.round_().clamp_(0, 255).to(torch.uint8).numpy()


def fill_harmonic(pixels: np.ndarray, mask: np.ndarray, sweeps: int = SWEEPS, omega: float = OMEGA) -> np.ndarray:
    """:func:`fill_holes`, then each damaged pixel relaxed toward the mean of its four neighbours.

    Red-black successive over-relaxation on the damaged pixels only (the rest are the fixed rims;
    at the photo's edge a pixel is its own neighbour), so time grows with the damage, not the
    photo; memory about 150 bytes per damaged pixel and 4 per pixel of the photo. A harmonic
    fill has no pull-push block edges and follows the rims' gradients across a scratch.
    """
    start = fill_holes(pixels, mask)
    holes = np.asarray(mask) >= 128
    ys, xs = np.nonzero(holes)
    if ys.size == 0 or holes.all():
        return start
    red = (ys + xs) % 2 == 0  # a red pixel's neighbours are all black or rims, and the other way round
    order = np.concatenate([np.nonzero(red)[0], np.nonzero(~red)[0]])
    ys, xs, reds = ys[order], xs[order], int(red.sum())
    height, width = holes.shape
    flat = start.reshape(height * width, -1)
    slot = np.full(height * width, -1, np.int32)  # a damaged pixel's row in the unknowns (reds first)
    slot[ys * width + xs] = np.arange(ys.size)
    neighbours, known, rows = [], [], ys.size
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        at = np.clip(ys + dy, 0, height - 1) * width + np.clip(xs + dx, 0, width - 1)
        link = slot[at].astype(np.int64)
        rim = link < 0  # a rim neighbour gets a row of its own after the unknowns; it never changes
        link[rim] = rows + np.arange(int(rim.sum()))
        rows += int(rim.sum())
        known.append(flat[at[rim]])
        neighbours.append(torch.from_numpy(link))
    values = torch.from_numpy(np.concatenate([flat[ys * width + xs], *known]).astype(np.float32))
    del slot, known
    for _ in range(sweeps):
        for first, last in ((0, reds), (reds, ys.size)):
            mean = values.index_select(0, neighbours[0][first:last])
            for near in neighbours[1:]:
                mean += values.index_select(0, near[first:last])
            values[first:last].mul_(1 - omega).add_(mean, alpha=omega / 4)
    top = 65535 if pixels.dtype == np.uint16 else 255
    out = start.copy()
    out[ys, xs] = values[: ys.size].round_().clamp_(0, top).numpy().astype(pixels.dtype)
    return out
