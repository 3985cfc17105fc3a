"""Synthetic old photos: the published unstructured recipe and procedural structured damage.

Every operation is a small pure function over an H×W×3 uint8 array whose random parameters
are drawn by the caller, and :func:`degrade` / :func:`add_damage` draw them from one
``numpy.random.Generator``. So a degraded photo is a function of (photo, recipe, seed): the
same seed gives the same bytes, which is what makes a test set reproducible.

The published recipe (``online_add_degradation_v2`` of the reference code; see
``reference-training.md`` §7) applies four families in a fresh random order, each with
probability 0.7: Gaussian blur, one of three noises, down/up-sampling, JPEG. Grey conversion
(p = 0.1) is applied afterwards by the datasets, to input and target together.

Two things here are NOT in the published code and are off in :data:`PUBLISHED`:

* fading (contrast loss, a warm colour cast, a lifted black level), which the real prints in
  ``shared/photos`` show and the published recipe never synthesises;
* structured damage (:mod:`oldphoto.training.damage`): the paper blends 62 scratch and 55
  paper textures that were never released; we draw scratches, wide cracks, folds, emulsion
  loss and dust procedurally instead, and return the mask of exactly the pixels changed.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from PIL import Image

from oldphoto.training.damage import DAMAGE_KINDS, Damage, add_damage, draw_damage, parse_kinds  # noqa: F401 - re-exported

# ---------------------------------------------------------------------------------------
# The unstructured operations (parameters given, randomness only where the op is random)


def gaussian_kernel(size: int, sigma: float) -> np.ndarray:
    """1-D Gaussian taps as OpenCV's ``getGaussianKernel`` computes them (sum 1)."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    k = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return k / k.sum()


def gaussian_blur(img: np.ndarray, size: int, sigma: float) -> np.ndarray:
    """Separable Gaussian blur with OpenCV's default border (reflect without repeating the edge)."""
    k = gaussian_kernel(size, sigma)
    r = size // 2
    f = img.astype(np.float64)
    mode = "reflect" if min(img.shape[:2]) > r else "edge"
    f = np.pad(f, ((r, r), (0, 0), (0, 0)), mode=mode)
    f = sum(k[i] * f[i : i + img.shape[0]] for i in range(size))
    f = np.pad(f, ((0, 0), (r, r), (0, 0)), mode=mode)
    f = sum(k[i] * f[:, i : i + img.shape[1]] for i in range(size))
    return _to_uint8(f)


def gaussian_noise(img: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Add N(0, σ²) (σ on the [0, 1] scale) to every value, clip."""
    v = img / 255.0 + rng.normal(0.0, sigma, img.shape)
    return _to_uint8(np.clip(v, 0, 1) * 255)


def speckle_noise(img: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Multiplicative noise ``v + v·n``, n ~ N(0, σ²), clip."""
    v = img / 255.0
    v = v + v * rng.normal(0.0, sigma, img.shape)
    return _to_uint8(np.clip(v, 0, 1) * 255)


def salt_and_pepper(img: np.ndarray, amount: float, salt: float, rng: np.random.Generator) -> np.ndarray:
    """Each value (channels independently) is hit with probability ``amount``: 255 with prob. ``salt``, else 0."""
    hit = rng.random(img.shape) < amount
    white = rng.random(img.shape) < salt
    out = img.copy()
    out[hit & white] = 255
    out[hit & ~white] = 0
    return out


def resample(img: np.ndarray, size: tuple[int, int], up: str) -> np.ndarray:
    """Bicubic down to ``size`` (w, h), then back up with ``up`` = "nearest" or "bilinear"."""
    h, w = img.shape[:2]
    pil = Image.fromarray(img).resize(size, Image.Resampling.BICUBIC)
    back = Image.Resampling.NEAREST if up == "nearest" else Image.Resampling.BILINEAR
    return np.asarray(pil.resize((w, h), back))


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """Round trip through Pillow's JPEG encoder at ``quality`` (default settings otherwise)."""
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"))


def fade(img: np.ndarray, contrast: float, lift: float, warmth: float) -> np.ndarray:
    """Age a print (not published): squeeze contrast about mid-grey, lift blacks, tint warm.

    ``contrast`` in (0, 1] scales distances from 0.5; ``lift`` raises the black level;
    ``warmth`` mixes in a sepia rendering of the photo's luminance.
    """
    v = img / 255.0
    v = 0.5 + (v - 0.5) * contrast
    v = lift + v * (1 - lift)
    luma = v @ np.array([0.299, 0.587, 0.114])
    sepia = luma[..., None] * np.array([1.07, 0.96, 0.78])
    v = v * (1 - warmth) + sepia * warmth
    return _to_uint8(np.clip(v, 0, 1) * 255)


#: Paper colours a print fades toward (RGB in [0, 1]): warm (sepia), greenish, neutral, magenta.
PAPERS = ((0.96, 0.87, 0.70), (0.88, 0.95, 0.82), (0.95, 0.95, 0.93), (0.95, 0.84, 0.90))


def fade_print(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Age a print as dyes fade (not published): each channel toward a paper colour, unevenly lit.

    Every channel keeps a share ``c`` of its contrast (U(0.5, 0.8), each dye U(0.8, 1) of
    that) and takes the rest from the paper (:data:`PAPERS`, dimmed U(0.85, 1)): lifted
    blacks, dull whites and a tint. Then exposure falls off linearly across the print by up
    to 12 %, in a random direction.
    """
    v = img.astype(np.float64) / 255.0
    base = rng.uniform(0.5, 0.8)
    c = base * rng.uniform(0.8, 1.0, 3)
    paper = np.array(PAPERS[int(rng.integers(len(PAPERS)))]) * rng.uniform(0.85, 1.0)
    v = v * c + (1 - c) * paper
    h, w = v.shape[:2]
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w]
    ramp = (np.cos(angle) * (xx / max(w - 1, 1) - 0.5) + np.sin(angle) * (yy / max(h - 1, 1) - 0.5)) + 0.5
    v = v * (1 - rng.uniform(0, 0.12) * np.clip(ramp, 0, 1))[..., None]
    return _to_uint8(np.clip(v, 0, 1) * 255)


def to_grey(img: np.ndarray) -> np.ndarray:
    """Grey (Pillow's ITU-R 601 luma) back to three equal channels."""
    grey = np.asarray(Image.fromarray(img).convert("L"))
    return np.repeat(grey[..., None], 3, axis=2)


def _to_uint8(f: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(f), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------
# The recipe: which operations, with which probabilities and ranges


@dataclass(frozen=True)
class Recipe:
    """Probabilities and ranges of the unstructured degradation (defaults: the published ones)."""

    p_each: float = 0.7  # each of blur, noise, resample, JPEG independently
    blur_sizes: tuple[int, ...] = (3, 5, 7)
    blur_sigma: tuple[float, float] = (1.0, 5.0)
    noise_sigma: tuple[float, float] = (5.0, 50.0)  # on the 0–255 scale
    sp_amount: tuple[float, float] = (0.0, 0.01)
    sp_salt: tuple[float, float] = (0.3, 0.8)
    jpeg_quality: tuple[int, int] = (40, 100)  # inclusive
    p_fade: float = 0.0  # not published
    #: Not published: the share of inputs kept nearly clean (half of them JPEG-compressed at quality
    #: 85–100, nothing else), so a residual network learns to leave a good photo alone.
    p_clean: float = 0.0
    clean_jpeg: tuple[int, int] = (85, 100)  # inclusive
    #: Not published: the share of inputs given Gaussian noise alone (σ from ``noise_sigma``), the
    #: degradation a blind denoiser is scored on; drawn after ``p_clean``, before fading.
    p_noise: float = 0.0
    fade_contrast: tuple[float, float] = (0.45, 0.9)
    fade_lift: tuple[float, float] = (0.0, 0.2)
    fade_warmth: tuple[float, float] = (0.0, 0.7)
    p_grey: float = 0.1  # applied by the caller: to input and target together in pairs

    def with_fade(self, p: float) -> Recipe:
        return replace(self, p_fade=p)


PUBLISHED = Recipe()
FAMILIES = ("blur", "noise", "resample", "jpeg")


def _draws_clean(rng: np.random.Generator, recipe: Recipe) -> bool:
    """:func:`degrade`'s first draw: whether the photo stays nearly clean (``p_clean``; no draw at 0)."""
    return recipe.p_clean > 0 and rng.random() < recipe.p_clean


def stays_clean(seed: int, recipe: Recipe) -> bool:
    """Whether :func:`degrade` from ``np.random.default_rng(seed)`` keeps the photo nearly clean,
    known before the photo is cut: the sampler softens those."""
    return _draws_clean(np.random.default_rng(seed), recipe)


def degrade(img: np.ndarray, rng: np.random.Generator, recipe: Recipe = PUBLISHED) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Degrade an H×W×3 uint8 photo; return it and the operations applied with their parameters.

    Draw order (fixed, so a seed pins the result): whether the photo stays nearly clean when
    ``p_clean`` is set (then at most a light JPEG and nothing else), whether it gets Gaussian noise
    alone when ``p_noise`` is set, fading when enabled (a print fades
    before it is scanned), then a permutation of the four published families and, for each,
    whether it applies and its parameters. Grey conversion is left to the caller.
    """
    ops: list[dict[str, Any]] = []
    if _draws_clean(rng, recipe):
        if rng.random() < 0.5:
            quality = int(rng.integers(recipe.clean_jpeg[0], recipe.clean_jpeg[1] + 1))
            img = jpeg(img, quality)
            ops.append({"op": "jpeg", "quality": quality})
        return img, ops
    if recipe.p_noise > 0 and rng.random() < recipe.p_noise:
        sigma = float(rng.uniform(*recipe.noise_sigma)) / 255.0
        ops.append({"op": "gaussian", "sigma": sigma})
        return gaussian_noise(img, sigma, rng), ops
    if recipe.p_fade > 0 and rng.random() < recipe.p_fade:
        params = {
            "contrast": float(rng.uniform(*recipe.fade_contrast)),
            "lift": float(rng.uniform(*recipe.fade_lift)),
            "warmth": float(rng.uniform(*recipe.fade_warmth)),
        }
        img = fade(img, **params)
        ops.append({"op": "fade", **params})
    for i in rng.permutation(len(FAMILIES)):
        family = FAMILIES[int(i)]
        if rng.random() >= recipe.p_each:
            continue
        if family == "blur":
            size = int(rng.choice(recipe.blur_sizes))
            sigma = float(rng.uniform(*recipe.blur_sigma))
            img = gaussian_blur(img, size, sigma)
            ops.append({"op": "blur", "size": size, "sigma": sigma})
        elif family == "noise":
            kind = ("gaussian", "speckle", "salt_pepper")[int(rng.integers(3))]
            if kind == "salt_pepper":
                amount = float(rng.uniform(*recipe.sp_amount))
                salt = float(rng.uniform(*recipe.sp_salt))
                img = salt_and_pepper(img, amount, salt, rng)
                ops.append({"op": kind, "amount": amount, "salt": salt})
            else:
                sigma = float(rng.uniform(*recipe.noise_sigma)) / 255.0
                img = (gaussian_noise if kind == "gaussian" else speckle_noise)(img, sigma, rng)
                ops.append({"op": kind, "sigma": sigma})
        elif family == "resample":
            h, w = img.shape[:2]
            size = (int(rng.integers(w // 2, w + 1)), int(rng.integers(h // 2, h + 1)))
            size = (max(1, size[0]), max(1, size[1]))
            up = ("nearest", "bilinear")[int(rng.integers(2))]
            img = resample(img, size, up)
            ops.append({"op": "resample", "size": list(size), "up": up})
        else:
            quality = int(rng.integers(recipe.jpeg_quality[0], recipe.jpeg_quality[1] + 1))
            img = jpeg(img, quality)
            ops.append({"op": "jpeg", "quality": quality})
    return img, ops


def degrade_photo(
    img: np.ndarray,
    seed: int,
    *,
    recipe: Recipe = PUBLISHED,
    damage: Damage | None = None,
    grey: bool | None = None,
) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """One synthetic old photo from a clean one and a seed: ``(photo, mask, operations)``.

    Unstructured degradation, then grey conversion (with the recipe's probability unless
    ``grey`` forces it), then structured damage when ``damage`` is given, drawn last so the
    mask stays exact (a blur after it would smear damage outside the mask). Without damage
    the mask is all zero.
    """
    rng = np.random.default_rng(seed)
    out, ops = degrade(img, rng, recipe)
    make_grey = rng.random() < recipe.p_grey if grey is None else grey
    if make_grey:
        out = to_grey(out)
        ops.append({"op": "grey"})
    mask = np.zeros(img.shape[:2], dtype=np.uint8)
    if damage is not None:
        out, mask = add_damage(out, rng, damage)
        ops.append({"op": "damage", "pixels": int((mask > 0).sum())})
    return out, mask, ops
