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
* structured damage. The paper blends 62 scratch and 55 paper textures that were never
  released, and the published training paints externally supplied binary masks white. We
  draw scratches, cracks, folds and dust procedurally instead, and return the mask of exactly
  the pixels changed.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

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
    fade_contrast: tuple[float, float] = (0.45, 0.9)
    fade_lift: tuple[float, float] = (0.0, 0.2)
    fade_warmth: tuple[float, float] = (0.0, 0.7)
    p_grey: float = 0.1  # applied by the caller: to input and target together in pairs

    def with_fade(self, p: float) -> Recipe:
        return replace(self, p_fade=p)


PUBLISHED = Recipe()
FAMILIES = ("blur", "noise", "resample", "jpeg")


def degrade(img: np.ndarray, rng: np.random.Generator, recipe: Recipe = PUBLISHED) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Degrade an H×W×3 uint8 photo; return it and the operations applied with their parameters.

    Draw order (fixed, so a seed pins the result): fading first when enabled (a print fades
    before it is scanned), then a permutation of the four published families and, for each,
    whether it applies and its parameters. Grey conversion is left to the caller.
    """
    ops: list[dict[str, Any]] = []
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


# ---------------------------------------------------------------------------------------
# Structured damage: procedural scratches, cracks, folds, dust, with their exact mask

DAMAGE_KINDS = ("scratches", "cracks", "folds", "dust")


@dataclass(frozen=True)
class Damage:
    """How much structured damage to draw; each kind appears with its probability."""

    kinds: tuple[str, ...] = DAMAGE_KINDS
    p_kind: dict[str, float] = field(
        default_factory=lambda: {"scratches": 0.8, "cracks": 0.4, "folds": 0.3, "dust": 0.6}
    )
    opacity: tuple[float, float] = (0.6, 1.0)


def _scale(h: int, w: int) -> float:
    return max(1.0, min(h, w) / 384.0)


def _bezier(p0: np.ndarray, p1: np.ndarray, p2: np.ndarray, n: int) -> list[tuple[float, float]]:
    t = np.linspace(0, 1, n)[:, None]
    pts = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2
    return [(float(x), float(y)) for x, y in pts]


def _strokes_scratches(rng: np.random.Generator, h: int, w: int) -> list[tuple[list, int]]:
    s, diag = _scale(h, w), float(np.hypot(h, w))
    out = []
    for _ in range(int(rng.integers(1, 7))):
        start = rng.uniform([0, 0], [w, h])
        angle = rng.uniform(0, np.pi)
        length = rng.uniform(0.2, 0.9) * diag
        end = start + length * np.array([np.cos(angle), np.sin(angle)])
        bend = rng.normal(0, 0.08 * length, 2)
        mid = (start + end) / 2 + bend
        out.append((_bezier(start, mid, end, 32), max(1, int(round(rng.uniform(1, 3) * s)))))
    return out


def _strokes_cracks(rng: np.random.Generator, h: int, w: int) -> list[tuple[list, int]]:
    s = _scale(h, w)
    out = []
    seeds = [(rng.uniform([0, 0], [w, h]), rng.uniform(0, 2 * np.pi)) for _ in range(int(rng.integers(1, 4)))]
    budget = 12
    while seeds and budget:
        budget -= 1
        pos, heading = seeds.pop()
        pts = [(float(pos[0]), float(pos[1]))]
        for _ in range(int(rng.integers(10, 60))):
            heading += rng.normal(0, 0.5)
            step = rng.uniform(3, 10) * s
            pos = pos + step * np.array([np.cos(heading), np.sin(heading)])
            pts.append((float(pos[0]), float(pos[1])))
            if rng.random() < 0.04:
                seeds.append((pos.copy(), heading + rng.choice([-1, 1]) * rng.uniform(0.4, 1.2)))
        out.append((pts, max(1, int(round(rng.uniform(1, 2) * s)))))
    return out


def _strokes_folds(rng: np.random.Generator, h: int, w: int) -> list[tuple[list, int]]:
    s = _scale(h, w)
    out = []
    for _ in range(int(rng.integers(1, 3))):
        if rng.random() < 0.5:  # roughly vertical or roughly horizontal, edge to edge
            x0, x1 = rng.uniform(0.1, 0.9, 2) * w
            pts = [(float(x0), -5.0), (float(x1), h + 5.0)]
        else:
            y0, y1 = rng.uniform(0.1, 0.9, 2) * h
            pts = [(-5.0, float(y0)), (w + 5.0, float(y1))]
        out.append((pts, max(2, int(round(rng.uniform(2, 6) * s)))))
    return out


def _draw_dust(rng: np.random.Generator, h: int, w: int, draw: ImageDraw.ImageDraw) -> None:
    s = _scale(h, w)
    for _ in range(int(rng.integers(20, 200))):
        cx, cy = rng.uniform([0, 0], [w, h])
        rx, ry = rng.uniform(0.5, 2.5, 2) * s
        draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=255)


def add_damage(img: np.ndarray, rng: np.random.Generator, damage: Damage = Damage()) -> tuple[np.ndarray, np.ndarray]:
    """Draw structured damage over ``img``; return the damaged photo and its H×W mask (255 = damaged).

    The mask marks exactly the pixels that changed: each damaged pixel is blended towards a
    light (mostly) or dark colour at a random opacity, and a pixel the blend would leave
    unchanged is pushed by 64 levels so it still counts as damaged. At least one kind is drawn.
    """
    h, w = img.shape[:2]
    chosen = [k for k in damage.kinds if rng.random() < damage.p_kind.get(k, 0.5)]
    if not chosen:
        chosen = [damage.kinds[int(rng.integers(len(damage.kinds)))]]
    out = img.astype(np.float64)
    mask = np.zeros((h, w), dtype=bool)
    for kind in chosen:
        layer = Image.new("L", (w, h), 0)
        draw = ImageDraw.Draw(layer)
        if kind == "dust":
            _draw_dust(rng, h, w, draw)
        else:
            strokes = {"scratches": _strokes_scratches, "cracks": _strokes_cracks, "folds": _strokes_folds}[kind](rng, h, w)
            for pts, width in strokes:
                draw.line(pts, fill=255, width=width, joint="curve")
        m = np.asarray(layer) > 0
        light = rng.random() < (0.9 if kind == "folds" else 0.75)
        colour = rng.uniform(215, 255, 3) if light else rng.uniform(0, 50, 3)
        if kind != "folds":
            colour = np.full(3, colour.mean())  # scratches and dust are neutral; folds may be tinted
        alpha = rng.uniform(*damage.opacity) * (0.7 if kind == "folds" else 1.0)
        out[m] = out[m] * (1 - alpha) + colour * alpha
        mask |= m
    result = _to_uint8(out)
    same = mask & np.all(result == img, axis=2)
    if same.any():
        pushed = np.where(img[same] > 127, img[same].astype(int) - 64, img[same].astype(int) + 64)
        result[same] = pushed.astype(np.uint8)
    return result, mask.astype(np.uint8) * 255


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


def parse_kinds(kinds: Sequence[str] | None) -> tuple[str, ...]:
    """Validate a list of damage kinds (None or empty: all of them)."""
    from oldphoto.errors import UsageError

    if not kinds:
        return DAMAGE_KINDS
    bad = [k for k in kinds if k not in DAMAGE_KINDS]
    if bad:
        raise UsageError(f"unknown damage kind {bad[0]!r} (choose from {', '.join(DAMAGE_KINDS)})")
    return tuple(dict.fromkeys(kinds))
