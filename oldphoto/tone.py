"""Fading and colour casts: an explicit, gated levels step before the networks.

Old prints fade toward their paper: the blacks lift, the whites dull, and each dye fades at its
own rate, which tints the photo (sepia, green, magenta). A small convolutional network sees a
few dozen pixels at a time and cannot tell a faded print from a pale scene; the photo's
histogram can. So the bundled ``lite`` model (its card's ``pipeline.levels``) runs this step
on the whole photo: on the restored one (``"after"``), because blur and resampling lift a
photo's darkest percentile and shorten its span, so that measured on the input a blurred but
well exposed photo can pass for a faded one (``oldphoto/pipeline.py``).

The step is gated so that a correctly exposed photo is left exactly as it is. A faded print
has both marks of fading at once: no channel reaches near black (the darkest channel's 0.5th
percentile is lifted) and no channel spans the full range (every channel's 0.5th–99.5th
percentile span is short). Well exposed photos may have one (a misty scene has lifted
blacks, a dim one a short span) but rarely both: of the 24 Kodak photos it acts on one
(kodim09, at 2 % strength: at most 1 level), and on their faded copies
(``benchmarks/quality.py``'s ``fade`` set) it acts on every one, +8.2 dB on average. The strength of the step is the product of the two marks, each ramping from
0 to 1 (:data:`LIFT_RAMP`, :data:`SPAN_RAMP`), so there is no cliff between a photo it
leaves alone and one it corrects. When it acts, each channel is stretched from its own
0.5th–99.5th percentiles toward [:data:`TARGET_LOW`, :data:`TARGET_HIGH`]: that undoes the
fade and, because each channel is stretched on its own, the tint that uneven dye fading
leaves. It is one affine map per channel for the whole photo, so tiled and untiled restores
see the same pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: The darkest channel's 0.5th percentile (of 255): no lift at the first value, full lift at the second.
LIFT_RAMP = (20.0, 34.0)
#: The widest channel's 0.5th–99.5th percentile span: full range at the first value, faded at the second.
SPAN_RAMP = (214.0, 196.0)
#: Where the stretched percentiles land (of 255): a little inside the range, as in a good print.
TARGET_LOW, TARGET_HIGH = 4.0, 251.0
#: Percentiles that define a channel's range (robust to dust and specular highlights).
LOW_PERCENTILE, HIGH_PERCENTILE = 0.5, 99.5
#: Pixels sampled for the percentiles (a strided grid: about this many).
SAMPLE = 1 << 18


@dataclass(frozen=True)
class Levels:
    """A per-channel affine map ``out = in · scale + offset`` on the 0–255 scale."""

    scale: tuple[float, ...]
    offset: tuple[float, ...]

    def apply(self, pixels: np.ndarray) -> np.ndarray:
        """``pixels`` (H×W×C, uint8) mapped and rounded back to uint8 (uint16: the same map at 16 bits)."""
        if pixels.dtype == np.uint16:
            out16 = np.empty_like(pixels)
            for c in range(pixels.shape[2]):
                mapped = pixels[..., c] * self.scale[c] + self.offset[c] * 257.0
                out16[..., c] = np.round(np.clip(mapped, 0, 65535)).astype(np.uint16)
            return out16
        lut = np.stack([np.clip(np.arange(256) * s + o, 0, 255) for s, o in zip(self.scale, self.offset)], axis=1)
        lut = np.round(lut).astype(np.uint8)
        out = np.empty_like(pixels)
        for c in range(pixels.shape[2]):
            out[..., c] = lut[pixels[..., c], c]
        return out


def _sample(pixels: np.ndarray) -> np.ndarray:
    h, w = pixels.shape[:2]
    step = max(1, int(np.sqrt(h * w / SAMPLE)))
    return pixels[::step, ::step].reshape(-1, pixels.shape[2]).astype(np.float32)


def measure(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each channel's 0.5th and 99.5th percentiles (0–255) of an H×W×C uint8 (or uint16) photo."""
    s = _sample(pixels) / (257.0 if pixels.dtype == np.uint16 else 1.0)
    return np.percentile(s, LOW_PERCENTILE, axis=0), np.percentile(s, HIGH_PERCENTILE, axis=0)


def _ramp(value: float, ends: tuple[float, float]) -> float:
    a, b = ends
    return float(np.clip((value - a) / (b - a), 0.0, 1.0))


def fading(low: np.ndarray, high: np.ndarray) -> float:
    """How faded a photo with these channel percentiles looks, 0 (not at all) to 1: lifted blacks × short span."""
    return _ramp(float(low.min()), LIFT_RAMP) * _ramp(float((high - low).max()), SPAN_RAMP)


def fade_levels(pixels: np.ndarray) -> Levels | None:
    """The levels that undo a faded, tinted photo's fading, or None when it is not faded."""
    if pixels.ndim != 3:
        raise ValueError("levels work on H×W×C photos")
    low, high = measure(pixels)
    strength = fading(low, high)
    if strength == 0.0:
        return None
    span = np.maximum(high - low, 8.0)  # a nearly flat channel is not stretched into noise
    scale = (TARGET_HIGH - TARGET_LOW) / span
    offset = TARGET_LOW - low * scale
    # Part of the way from the identity when the photo is only partly faded.
    scale = 1.0 + strength * (scale - 1.0)
    offset = strength * offset
    return Levels(tuple(float(v) for v in scale), tuple(float(v) for v in offset))


def undo_fading(pixels: np.ndarray) -> np.ndarray:
    """``pixels`` with fading and casts undone when the gate says it is faded; else the same array."""
    levels = fade_levels(pixels)
    return pixels if levels is None else levels.apply(pixels)
