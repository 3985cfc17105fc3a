"""Straight runs in a mask: keep only marked pixels that lie on a straight line of marked pixels.

A morphological opening by line segments, the union over ``angles`` directions: the mask grown
by one pixel is eroded and dilated along each segment, and the result kept where the mask
itself is marked. A thin scratch survives whatever its direction (the one-pixel growth forgives
a digital line that wanders half a pixel off the segment's), while a speck, a blob shorter than
the run or a short curl does not. The lite detector uses it on its finest working size, where
the network's low-confidence marks are either the thin strokes the coarse scales blur away or
grain and specks (docs/TRAINING.md, "Straight runs").
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F

from oldphoto.pipeline import dilate


@lru_cache(maxsize=8)
def segment_kernels(length: int, angles: int) -> torch.Tensor:
    """``angles``×1×L×L float32 kernels (L = ``length``, odd): each a digital segment through the
    centre at k·180°/``angles``, one pixel per step along its major axis, so ``length`` pixels each."""
    if length < 3 or length % 2 == 0:
        raise ValueError(f"a run is an odd number of pixels, 3 or more, not {length}")
    kernels = torch.zeros(angles, 1, length, length)
    centre = length // 2
    for k in range(angles):
        a = math.pi * k / angles
        dx, dy = math.cos(a), math.sin(a)
        for t in range(-centre, centre + 1):
            if abs(dx) >= abs(dy):  # mostly horizontal: one pixel per column
                x, y = t, round(t * dy / dx)
            else:
                x, y = round(t * dx / dy), t
            kernels[k, 0, centre + y, centre + x] = 1.0
    return kernels


@lru_cache(maxsize=8)
def _segment_offsets(length: int, angles: int) -> tuple[tuple[tuple[int, int], ...], ...]:
    """Per direction, the (row, column) of each segment pixel in the L×L square of ``segment_kernels``."""
    kernels = segment_kernels(length, angles)
    return tuple(tuple((int(r), int(c)) for r, c in kernels[k, 0].nonzero().tolist()) for k in range(angles))


def straight_runs(hit: torch.Tensor, length: int, angles: int = 16) -> torch.Tensor:
    """Of the N×1×H×W boolean ``hit``, the pixels on a straight run of about ``length`` pixels
    (``length`` − 2 along the run's major axis, after the one-pixel growth) in one of ``angles``
    directions. Never adds a pixel. Erosion and dilation are ANDs and ORs of shifted copies (the
    segment's pixels), outside the photo counting as unmarked."""
    pad = length // 2
    grown = F.pad(dilate(hit.to(torch.float32), 1), (pad, pad, pad, pad)).bool()
    h, w = hit.shape[-2:]
    out = torch.zeros(hit.shape, dtype=torch.bool, device=hit.device)
    for offsets in _segment_offsets(length, angles):
        eroded = torch.ones(hit.shape, dtype=torch.bool, device=hit.device)
        for r, c in offsets:
            eroded &= grown[..., r:r + h, c:c + w]
        centres = F.pad(eroded, (pad, pad, pad, pad))
        for r, c in offsets:  # every pixel of a segment around each surviving centre
            out |= centres[..., length - 1 - r:length - 1 - r + h, length - 1 - c:length - 1 - c + w]
    return out & hit.bool()
