"""A restoration averaged over flips of the photo (a card's ``pipeline.ensemble``; lite quality).

A small network restores a photo and its mirror image slightly differently, and the two errors
are partly independent, so the average of the restoration and the mirrored restoration of the
mirrored photo is closer to the clean photo than either. On kodak24 the lite quality model
gains about 0.2 dB on noise, blur and σ 25 with two views (left-right mirror) and 0.3 dB with
four (also upside down, and both), for two and four times the time (``benchmarks/README.md``,
"Averaged over flips"). Not published: the published cards have no ``ensemble``.

The views are summed in integers (each one is a finished 8- or 16-bit photo, restored through
the same tiled path) and divided with rounding, so tiling and thread count cannot change the
result beyond what they change in each view.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from PIL import Image

from oldphoto.errors import WeightsError

#: (upside down, mirrored) for each view, in the order a card's ``ensemble`` takes them.
VIEWS = ((False, False), (False, True), (True, False), (True, True))

#: One view's restoration: (photo samples, mask or None, progress or None) -> restored samples.
Restore = Callable[[np.ndarray, "Image.Image | None", "Callable[[int, int], None] | None"], np.ndarray]


def ensemble_size(pipeline: Mapping[str, Any]) -> int:
    """How many views a card averages: 1 (none; every published card), 2 or 4."""
    n = pipeline.get("ensemble", 1)
    if n not in (1, 2, 4):
        raise WeightsError(f"the model card's pipeline.ensemble is {n!r}; it must be 1, 2 or 4")
    return int(n)


def ensemble_bytes(height: int, width: int, n: int, deep: bool) -> int:
    """Host bytes the running sum takes (none for one view): 16-bit sums of 8-bit views, 32-bit of 16-bit ones."""
    return 0 if n == 1 else height * width * 3 * (4 if deep else 2)


def _flip(pixels: np.ndarray, upside_down: bool, mirrored: bool) -> np.ndarray:
    return pixels[::-1 if upside_down else 1, ::-1 if mirrored else 1]


def _flip_mask(mask: Image.Image | None, upside_down: bool, mirrored: bool) -> Image.Image | None:
    if mask is None:
        return None
    if upside_down:
        mask = mask.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    return mask.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if mirrored else mask


def averaged(restore: Restore, pixels: np.ndarray, mask: Image.Image | None, n: int,
             progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """``restore`` run on the first ``n`` views of ``pixels`` (and ``mask``), each flipped back, averaged with rounding."""
    if n == 1:
        return restore(pixels, mask, progress)

    def view(k: int) -> np.ndarray:
        upside_down, mirrored = VIEWS[k]
        part = None if progress is None else (lambda done, of: progress(k * of + done, n * of))
        flipped = np.ascontiguousarray(_flip(pixels, upside_down, mirrored))
        return _flip(restore(flipped, _flip_mask(mask, upside_down, mirrored), part), upside_down, mirrored)

    first = view(0)
    total = first.astype(np.uint32 if first.dtype == np.uint16 else np.uint16)
    for k in range(1, n):
        total += view(k)
    return ((total + n // 2) // n).astype(first.dtype)
