"""Scratch detection: photo → damage probability → mask, around the detection UNet.

Published pre-processing: (published mode only) resize the photo to multiples of 16 with
bicubic; grey with PIL's "L"; ``(p/255 − 0.5)/0.5``; bilinear resize so the short side is
256 and the long side the nearest multiple of 16 of its proportional length; UNet; sigmoid;
nearest resize back; damaged where probability ≥ the card's threshold (0.4). In ``default``
mode the probability is resized back to the photo's own size instead of the rounded one.
Not published: a card may grow the mask by ``dilation`` pixels (3×3 steps, after the resize
back), which the lite detector's card uses to cover the edges of wide cracks, and may give
``short_side`` as a list of working scales whose probabilities are averaged (the lite card's
192 and 384: the larger scale tells clean edges from strokes, the smaller one keeps short, wide
cracks whole), each resized back bilinearly when it says ``"resize_back": "bilinear"``, and
weighted by ``scale_weights`` when the card gives them (equal otherwise), and
may add a finer working size, ``fine_side``, whose probability alone marks a pixel where it
reaches ``fine_threshold`` (a thin stroke the coarse mean blurs below the cut), and, with
``stroke_threshold`` and ``stroke_length``, also where it reaches the lower stroke threshold on
a straight run of at least that many pixels of the fine working size (``oldphoto/strokes.py``:
thin scratches, not specks or grain). The published card has none of these, so its masks stay
the published ones.
A UNet built with ``in_channels: 3`` reads the photo in colour (RGB, same scaling) instead of grey.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from oldphoto.errors import WeightsError
from oldphoto.pipeline import check_photo_size, rounded_size
from oldphoto.strokes import straight_runs


DEFAULT_THRESHOLD = 0.4  # the published card's cut


def card_threshold(pipeline: Mapping[str, Any]) -> float:
    """The card's cut on the damage probability (the published 0.4 when it names none)."""
    return float(pipeline.get("threshold", DEFAULT_THRESHOLD))


def working_size(width: int, height: int, short: int = 256, multiple: int = 16) -> tuple[int, int]:
    """(width, height) the UNet sees: short side ``short``, long side rounded to ``multiple``."""
    if width <= height:
        return short, int(round(height * short / width / multiple)) * multiple
    return int(round(width * short / height / multiple)) * multiple, short


def input_channels(unet: nn.Module) -> int:
    """How many channels the UNet reads: 1 (grey, as published) or 3 (colour); its first convolution says."""
    return next(m for m in unet.modules() if isinstance(m, nn.Conv2d)).in_channels


def detection_input(image: Image.Image, pipeline: Mapping[str, Any], postprocess: str,
                    channels: int = 1) -> tuple[torch.Tensor, tuple[int, int]]:
    """Return the UNet input (1×channels×h×w) and the (width, height) the probability is resized back to."""
    photo, size = _as_read(image, pipeline, postprocess, channels)
    return _at_scale(photo, size, int(pipeline.get("short_side", 256))), size


def _as_read(image: Image.Image, pipeline: Mapping[str, Any], postprocess: str, channels: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """The photo as the UNet reads it (1×1×H×W grey, or 1×3×H×W RGB, in [−1, 1]) and its (width, height), before any working scale."""
    check_photo_size(image.size)
    image = image.convert("RGB")
    if postprocess == "published":
        size = rounded_size(*image.size, int(pipeline.get("multiple", 16)))
        if size != image.size:
            image = image.resize(size, Image.Resampling.BICUBIC)
    if channels == 3:
        pixels = torch.from_numpy(np.asarray(image, dtype=np.float32)).permute(2, 0, 1)[None].contiguous()
    else:
        pixels = torch.from_numpy(np.asarray(image.convert("L"), dtype=np.float32))[None, None]
    return pixels.div_(255.0).sub_(0.5).div_(0.5), image.size


def _at_scale(photo: torch.Tensor, size: tuple[int, int], short: int) -> torch.Tensor:
    """``photo`` resized bilinearly to the working size whose short side is ``short``."""
    w, h = working_size(*size, short, 16)
    return F.interpolate(photo, size=(h, w), mode="bilinear", align_corners=False)


def detect_probability(unet: nn.Module, x: torch.Tensor, size: tuple[int, int], resize: str = "nearest") -> torch.Tensor:
    """Run the UNet, sigmoid, and resize the probability to ``size`` (width, height): nearest, as
    published, or ``"bilinear"``."""
    return _resized(_probability(unet, x), size, resize)


def _probability(unet: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The UNet's damage probability at its input's own size (float32, whatever it computed in)."""
    return torch.sigmoid(unet(x).float())


def _resized(prob: torch.Tensor, size: tuple[int, int], resize: str) -> torch.Tensor:
    """``prob`` (1×1×h×w) resized to ``size`` (width, height), nearest or bilinear."""
    if resize == "bilinear":
        return F.interpolate(prob, size=(size[1], size[0]), mode="bilinear", align_corners=False)
    return F.interpolate(prob, size=(size[1], size[0]), mode="nearest")


def fine_score(prob: torch.Tensor, pipeline: Mapping[str, Any]) -> torch.Tensor:
    """The fine working size's probability (1×1×h×w, at that size) on the card's cut: scaled by
    threshold / fine_threshold, and, with ``stroke_threshold``, raised on straight runs of at least
    ``stroke_length`` pixels at or above it to prob × threshold / stroke_threshold, so that the
    card's cut marks (fine ≥ fine_threshold) or (a straight run with fine ≥ stroke_threshold)."""
    cut = card_threshold(pipeline)
    score = prob * (cut / float(pipeline["fine_threshold"]))
    if pipeline.get("stroke_threshold") is not None:
        low = float(pipeline["stroke_threshold"])
        runs = straight_runs(prob >= low, int(pipeline["stroke_length"]))
        torch.maximum(score, torch.where(runs, prob * (cut / low), torch.zeros_like(prob)), out=score)
    return score


def scale_weights(pipeline: Mapping[str, Any], count: int) -> list[float]:
    """The weights of the card's working scales in their mean (``scale_weights``; equal without it):
    a small speck reaches the cut more often when the finer scales count more."""
    weights = pipeline.get("scale_weights")
    if weights is None:
        return [1.0] * count
    weights = [float(w) for w in weights]
    if len(weights) != count or min(weights) < 0 or sum(weights) <= 0:
        raise WeightsError(f"the detector card's scale_weights {weights} do not fit the card's {count} working scale(s)")
    return weights


def damage_probability(unet: nn.Module, image: Image.Image, pipeline: Mapping[str, Any], postprocess: str,
                       device: torch.device | str = "cpu") -> torch.Tensor:
    """The card's damage probability (1×1×H×W at the photo's size): the UNet at each working
    scale of ``short_side`` (one number, or a list), each resized back (the card's
    ``resize_back``: nearest, as published, or bilinear), averaged (weighted by ``scale_weights``).

    With ``fine_side`` the UNet also runs at that finer size (once, when it is also one of the
    mean's scales), and where its probability
    reaches ``fine_threshold`` (or ``stroke_threshold`` on a straight run: ``fine_score``) the
    result is raised to the card's ``threshold``, at the fine size before the resize back, so the
    card's cut marks (mean ≥ threshold) or the fine pass's own marks, and a sweep of the cut moves
    the mean's and the fine cut together (the straight runs stay those found at stroke_threshold).
    """
    scales = pipeline.get("short_side", 256)
    scales = [int(s) for s in scales] if isinstance(scales, (list, tuple)) else [int(scales)]
    photo, size = _as_read(image, pipeline, postprocess, input_channels(unet))  # once: only the resize differs per scale
    weights = scale_weights(pipeline, len(scales))
    resize = str(pipeline.get("resize_back", "nearest"))
    fine_side = None if pipeline.get("fine_side") is None else int(pipeline["fine_side"])
    fine, total = None, None
    for short, weight in zip(scales, weights):
        prob = _probability(unet, _at_scale(photo, size, short).to(device))
        if short == fine_side:
            fine = prob  # the fine pass is also a working scale of the mean: run the UNet there once
        each = _resized(prob, size, resize)
        total = each.mul_(weight) if total is None else total.add_(each, alpha=weight)
    total.div_(sum(weights))
    if fine_side is not None:
        if fine is None:
            fine = _probability(unet, _at_scale(photo, size, fine_side).to(device))
        torch.maximum(total, _resized(fine_score(fine, pipeline), size, resize), out=total)
    return total


def probability_to_mask(prob: torch.Tensor, threshold: float) -> Image.Image:
    """1×1×H×W probability to an "L" mask: 255 where damaged (probability ≥ threshold)."""
    return Image.fromarray(((prob[0, 0] >= threshold).to(torch.uint8) * 255).cpu().numpy(), mode="L")


def mask_from_probability(prob: torch.Tensor, pipeline: Mapping[str, Any]) -> Image.Image:
    """The card's mask: probability ≥ its ``threshold``, grown by its ``dilation`` (default 0)."""
    from oldphoto.pipeline import dilate

    grow = int(pipeline.get("dilation", 0))
    hit = (prob >= card_threshold(pipeline)).float()
    return probability_to_mask(dilate(hit, grow) if grow else hit, 0.5)
