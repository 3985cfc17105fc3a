"""The one restore path: preprocessing, the networks of a mode, postprocessing.

Two behaviours share everything but the geometry:

* ``published`` reproduces the published code's files: the photo is resized to the mode's
  multiple (4 with bilinear for quality, 16 with bicubic for the scratch modes, which is
  what the published detection step does), and the output keeps that rounded size.
* ``default`` keeps the photo's exact pixel size. The networks need sides that are multiples
  of 4 (two stride-2 convolutions, undone by two ×2 transposed ones), so the photo is
  reflect-padded by at most 3 pixels per side and the result cropped back. We pad rather
  than resize because resizing twice (down to the multiple, back to the original) resamples
  every pixel and softens the whole photo, while padding leaves every real pixel's input
  untouched; the only influence of the pad is on instance-norm statistics and the few
  border pixels whose receptive field reaches it. For photos whose sides already are
  multiples of 4 (quality) or whose mask resize is a no-op, both behaviours give the same
  pixels.

Both min–max stretch the decoder output as the published code does (over the photo's own
pixels in ``default``, so the padding cannot move the stretch).

A model whose card says ``"residual": true`` in its ``pipeline`` (our ``lite`` wiring, not a
published one) is read differently: the photo is ``input + decoder(mapping(encoder(input)))``,
clamped to the 8-bit range, with no stretch. The networks are the published ones; only this last,
pointwise step differs, so :func:`finish` and the tiled ``finish_map`` apply it alike, tile
by tile (see :func:`to_unit`). Why: instance norms discard each channel's absolute level, so
a decoder alone cannot say how bright the photo is (the published code restores the range by
the stretch); the residual carries the level through from the input. A card's
``pipeline.levels`` (lite) undoes fading and colour casts with one gated affine map per
channel (:mod:`oldphoto.tone`): the residual wiring keeps the input's levels, so without it
a faded print would stay faded. ``true`` (or ``"before"``) runs it on the input,
``"after"`` on the restored photo (:func:`levels_after`): blur and resampling lift a photo's
darkest percentile and shorten its span, so measured before the networks a blurred but
correctly exposed photo can look faded, and its colours are then "corrected" away.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from oldphoto.errors import ImageError, UsageError
from oldphoto.holefill import fill_harmonic, fill_holes
from oldphoto.inputs import fit_mask
from oldphoto.models import RESTORATION_ORDER
from oldphoto.tone import undo_fading

#: Spatial multiple the VAE needs (two stride-2 convolutions).
NETWORK_MULTIPLE = 4
_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


@dataclass
class Prepared:
    """A photo ready for the networks, and what is needed to turn the output back into one."""

    x: torch.Tensor
    mask: torch.Tensor | None
    size: tuple[int, int]
    pad: tuple[int, int]
    #: The card's ``pipeline.residual``: output = input + network output, no min–max stretch.
    residual: bool = False
    #: White in the photo's samples: 255 for 8-bit photos, 65535 for 16-bit ones (the output's too).
    top: int = 255


def rounded_size(width: int, height: int, multiple: int) -> tuple[int, int]:
    """The published rounding: each side to the nearest multiple (Python ``round``), at least one multiple."""
    return (max(multiple, int(round(width / multiple)) * multiple), max(multiple, int(round(height / multiple)) * multiple))


def check_photo_size(size: tuple[int, int], *, minimum: int = 8) -> None:
    """Refuse photos (width, height) too small to restore (the latent must be at least 2×2 for its reflection pads)."""
    w, h = size
    if w < minimum or h < minimum:
        raise ImageError(f"photo is {w}×{h} pixels; at least {minimum}×{minimum} is needed")


def dilate(mask: torch.Tensor, iterations: int) -> torch.Tensor:
    """Dilate a B×1×H×W mask ``iterations`` times with a 3×3 square (outside counts as clear)."""
    for _ in range(iterations):
        mask = F.max_pool2d(mask, 3, stride=1, padding=1)
    return mask


def white_of(pixels: np.ndarray) -> int:
    """The white level of uint8 (255) or uint16 (65535) samples."""
    return 65535 if pixels.dtype == np.uint16 else 255


def paint_holes(pixels: np.ndarray, mask: np.ndarray, rows: int = 256) -> np.ndarray:
    """Paint damaged pixels white as the published code does: ``uint8(img·(1−m) + 255·m)``.

    16-bit samples are painted to 65535 the same way. Worked in bands of ``rows`` so a large
    scan never needs a float64 copy of itself.
    """
    white = white_of(pixels)
    out = np.empty_like(pixels)
    for top in range(0, pixels.shape[0], rows):
        m = mask[top : top + rows].astype(np.float64)[..., None] / 255.0
        band = pixels[top : top + rows].astype(np.float64)
        out[top : top + rows] = (band * (1 - m) + white * m).astype(pixels.dtype)
    return out


#: How damaged pixels are painted before the scratch networks, as a card's ``pipeline.hole_fill`` says:
#: ``white`` as published, ``smooth`` or ``harmonic`` (:mod:`oldphoto.holefill`).
_FILLS = {"white": paint_holes, "smooth": fill_holes, "harmonic": fill_harmonic}
HOLE_FILLS = tuple(_FILLS)


def paint_damage(pixels: np.ndarray, mask: np.ndarray, how: str = "white") -> np.ndarray:
    """Damaged pixels (uint8 ``mask``, 255 = damaged) painted for the scratch networks, ``how`` in :data:`HOLE_FILLS`."""
    if how not in _FILLS:
        raise UsageError(f"unknown hole fill {how!r} (use {', '.join(HOLE_FILLS)})")
    return _FILLS[how](pixels, mask)


def to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """H×W×3 uint8 (or uint16) to 1×3×H×W float32 in [-1, 1]: ``(p/255 − 0.5)/0.5`` (``p/65535`` for 16 bits)."""
    if pixels.dtype == np.uint16:
        t = torch.from_numpy(pixels.astype(np.float32)).permute(2, 0, 1).unsqueeze(0).div_(65535.0)
        return t.sub_(0.5).div_(0.5)
    t = torch.from_numpy(np.array(pixels, dtype=np.uint8, copy=True)).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
    return t.sub_(0.5).div_(0.5)


def resize_pixels(pixels: np.ndarray, size: tuple[int, int], resample: Image.Resampling) -> np.ndarray:
    """H×W×3 samples resized to ``size`` (width, height): through Pillow's RGB for uint8, per channel in float for uint16."""
    if pixels.dtype == np.uint8:
        return np.asarray(Image.fromarray(pixels).resize(size, resample))
    channels = [np.asarray(Image.fromarray(pixels[..., c].astype(np.float32)).resize(size, resample)) for c in range(3)]
    return np.clip(np.rint(np.stack(channels, axis=2)), 0, 65535).astype(np.uint16)


def prepare(
    image: Image.Image | np.ndarray, mask: Image.Image | None, pipeline: Mapping[str, Any], postprocess: str = "default"
) -> Prepared:
    """Turn an RGB photo (PIL, or H×W×3 uint8/uint16 samples) and an "L" damage mask at its size
    (255 = damaged) into network input."""
    pixels = np.asarray(image.convert("RGB")) if isinstance(image, Image.Image) else image
    check_photo_size((pixels.shape[1], pixels.shape[0]))
    uses_mask = bool(pipeline.get("uses_mask"))
    if uses_mask and mask is None:
        raise UsageError("this mode needs a damage mask (give --mask or --detect-scratches)")
    if postprocess == "published":
        size = rounded_size(pixels.shape[1], pixels.shape[0], int(pipeline.get("multiple", NETWORK_MULTIPLE)))
        if size != (pixels.shape[1], pixels.shape[0]):
            pixels = resize_pixels(pixels, size, _RESAMPLE[pipeline.get("resample", "bilinear")])
        if mask is not None:
            mask = fit_mask(mask, size)
    elif mask is not None:
        mask = fit_mask(mask, (pixels.shape[1], pixels.shape[0]))
    if levels_order(pipeline) == "before":
        pixels = undo_fading(pixels)  # a card's explicit fading step (lite), see oldphoto.tone
    m = None
    if uses_mask and mask is not None:
        mt = torch.from_numpy(np.asarray(mask.convert("L"), dtype=np.float32) / 255.0)[None, None]
        mt = dilate(mt, int(pipeline.get("mask_dilation", 0)))
        pixels = paint_damage(pixels, (mt[0, 0] * 255.0).round().numpy().astype(np.uint8), pipeline.get("hole_fill", "white"))
        m = mt
    x = to_tensor(pixels)
    h, w = x.shape[-2:]
    pad = (0, 0)
    if postprocess == "default":
        pad = (-h % NETWORK_MULTIPLE, -w % NETWORK_MULTIPLE)
        if any(pad):
            x = reflect_pad(x, pad)
            m = reflect_pad(m, pad) if m is not None else None
    return Prepared(x=x, mask=m, size=(h, w), pad=pad, residual=is_residual(pipeline), top=white_of(pixels))


def levels_order(pipeline: Mapping[str, Any]) -> str | None:
    """When a card runs its levels step: ``"before"`` the networks (``true`` in older cards), ``"after"``, or None."""
    value = pipeline.get("levels")
    return "before" if value in (True, "before") else "after" if value == "after" else None


def levels_after(pixels: np.ndarray, pipeline: Mapping[str, Any]) -> np.ndarray:
    """The restored photo with fading undone when the card runs its levels step last (``"after"``)."""
    return undo_fading(pixels) if levels_order(pipeline) == "after" else pixels


def keep_undamaged(restored: np.ndarray, image: Image.Image | np.ndarray, mask: Image.Image, margin: int) -> np.ndarray:
    """The restored pixels where the RGB photo is damaged (the mask grown by ``margin`` pixels), the photo's own elsewhere.

    A card's ``pipeline.keep_undamaged`` (the bundled lite scratch model's, not published)
    asks for it: a small scratch network fills damage well enough but would blur the rest,
    which its ``then`` mode restores instead. ``image`` and ``mask`` are brought to the
    restored size first (``--postprocess published`` rounds it).
    """
    size = (restored.shape[1], restored.shape[0])
    photo = np.asarray(image.convert("RGB")) if isinstance(image, Image.Image) else image
    if (photo.shape[1], photo.shape[0]) != size:
        photo = resize_pixels(photo, size, Image.Resampling.BICUBIC)
    m = torch.from_numpy(np.asarray(fit_mask(mask, size).convert("L")) >= 128).float()[None, None]
    keep = dilate(m, margin)[0, 0].numpy() > 0
    return np.where(keep[..., None], restored, photo)


def is_residual(pipeline: Mapping[str, Any] | None) -> bool:
    """Whether a card's ``pipeline`` asks for the global residual (output = input + networks)."""
    return bool((pipeline or {}).get("residual"))


def reflect_pad(t: torch.Tensor, pad: tuple[int, int]) -> torch.Tensor:
    """Pad bottom/right by ``pad`` = (rows, cols), reflecting (replicating when the side is 1 pixel)."""
    rows, cols = pad
    h, w = t.shape[-2:]
    mode = "reflect" if rows < h and cols < w else "replicate"
    return F.pad(t, (0, cols, 0, rows), mode=mode)


def run_networks(bundle: nn.ModuleDict, x: torch.Tensor, mask: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """Run a restoration bundle whole; returns ``latent``, ``mapped`` and ``output`` (in [−1, 1]).

    The networks run in :data:`~oldphoto.models.RESTORATION_ORDER`, each its own steps.
    """
    outputs = {}
    for name, produces in RESTORATION_ORDER.items():
        x = outputs[produces] = bundle[name](x, mask)
    return outputs


def add_residual(output: torch.Tensor, x: torch.Tensor, residual: bool) -> torch.Tensor:
    """The restored image in [−1, 1] terms: ``x + output`` for a residual model, else ``output``.

    The one definition of the residual wiring; training (``oldphoto.training.stages``) and
    :func:`to_unit` (untiled and tiled restores) all call it. Not clamped here, so training
    keeps a gradient where the sum leaves [−1, 1]; the 8-bit conversion clamps.
    """
    if not residual:
        return output
    return x.float() + output.float()


def to_unit(output: torch.Tensor, x: torch.Tensor | None, residual: bool) -> torch.Tensor:
    """A C×H×W (or 1×C×H×W) piece of the decoder output to [0, 1], before any stretch.

    Pointwise, so a tile of the output with the same tile of the input gives the same pixels
    as the whole photo does.
    """
    y = output.float()
    if residual:
        assert x is not None
        y = add_residual(y, x, True)
    return (y + 1) / 2


def to_uint8(y: torch.Tensor) -> np.ndarray:
    """C×H×W in [0, 1] to H×W×C uint8 (round half up, clamped)."""
    return y.mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def to_pixels(y: torch.Tensor, top: int) -> np.ndarray:
    """C×H×W in [0, 1] to H×W×C samples with white ``top``: uint8 (:func:`to_uint8`) or uint16, round half up."""
    if top == 255:
        return to_uint8(y)
    return y.double().mul(top).add_(0.5).clamp_(0, top).floor_().permute(1, 2, 0).cpu().numpy().astype(np.uint16)


def finish(output: torch.Tensor, prepared: Prepared, rows: int = 256) -> np.ndarray:
    """Decoder output (1×3×H×W in [−1, 1]) to an H×W×3 uint8 (uint16 for a 16-bit photo) photo.

    Min–max stretched as published, or, for a residual model, added to the input and clamped.
    Worked in bands of ``rows`` (the same float32 operations per pixel, the minimum and
    maximum taken over all bands first), so a large scan needs no full-size float copies.
    """
    h, w = prepared.size
    bands = [(top, min(top + rows, h)) for top in range(0, h, rows)]

    def unit(top: int, bottom: int) -> torch.Tensor:
        x = prepared.x[0, :, top:bottom, :w].to(output.device) if prepared.residual else None
        return to_unit(output[0, :, top:bottom, :w], x, prepared.residual)

    pixels = np.empty((h, w, output.shape[1]), dtype=np.uint8 if prepared.top == 255 else np.uint16)
    if prepared.residual:
        for top, bottom in bands:
            pixels[top:bottom] = to_pixels(unit(top, bottom), prepared.top)
        return pixels
    lo = torch.tensor(float("inf"), device=output.device)
    hi = torch.tensor(float("-inf"), device=output.device)
    for top, bottom in bands:
        y = unit(top, bottom)
        lo, hi = torch.minimum(lo, y.min()), torch.maximum(hi, y.max())
    span = torch.clamp(hi - lo, min=1e-5)
    for top, bottom in bands:
        pixels[top:bottom] = to_pixels((unit(top, bottom) - lo) / span, prepared.top)
    return pixels
