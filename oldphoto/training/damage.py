"""Procedural structured damage of old prints, drawn over a photo with its exact mask.

The paper blends 62 scratch and 55 paper textures that were never released, and the
published training paints externally supplied binary masks white. We draw the damage the
real prints in ``shared/photos/scratched`` show instead, five kinds:

* ``scratches``: thin, nearly straight strokes, 1–3 px (×1 per 384 px of short side);
* ``cracks``: wide cracks and tears through the emulsion: a jagged, branching random walk
  whose width swells and tapers along it (lens-shaped like the big crack on ``scratched/a``),
  paper-white (often with a dark rim where the edge lifts) or dark, textured like paper;
* ``folds``: an edge-to-edge crease: a band lit on one side and shaded on the other, with a
  broken white line of cracked emulsion along its ridge;
* ``emulsion``: emulsion loss: clusters of ragged flakes showing the paper, often at an edge;
* ``dust``: small specks.

Cracks, folds and emulsion loss are sized as fractions of ``ref``, the short side of the
photo the damage belongs to (the drawn image's own short side unless the caller says the
image is a crop of a larger photo), so they keep the proportions of the real prints at any
resolution: a crack is 0.5–2.5 % of the short side wide (``scratched/a``'s big crack is about
1–1.5 %, ``scratched/b``'s forehead crack about 1 %) and 25–100 % of it long by default
(``Damage.crack_length``; ``a``'s big crack is a short, stubby 11 %). Scratches and dust keep
the absolute widths of the earlier generator.

Every draw comes from the caller's ``numpy.random.Generator``: the same seed gives the same
bytes, and the mask marks exactly the pixels that changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

DAMAGE_KINDS = ("scratches", "cracks", "folds", "emulsion", "dust")


@dataclass(frozen=True)
class Damage:
    """How much structured damage to draw; each kind appears with its probability.

    Sizes of the kinds that scale with the photo are fractions of its short side.
    """

    kinds: tuple[str, ...] = DAMAGE_KINDS
    p_kind: dict[str, float] = field(
        default_factory=lambda: {"scratches": 0.6, "cracks": 0.5, "folds": 0.25, "emulsion": 0.3, "dust": 0.5}
    )
    opacity: tuple[float, float] = (0.6, 1.0)  # scratches and dust
    stroke_light: float = 0.75  # chance that a photo's scratches are light, not dark (drawn again for its dust)
    dust_light: float | None = None  # the same chance for its dust alone (None: ``stroke_light``)
    crack_width: tuple[float, float] = (0.005, 0.025)
    crack_length: tuple[float, float] = (0.25, 1.0)  # of the short side; scratched/a's big crack is about 0.11
    fold_width: tuple[float, float] = (0.012, 0.035)
    flake_size: tuple[float, float] = (0.015, 0.08)  # emulsion flakes' radius

    def light_chance(self, kind: str) -> float:
        """The chance that a photo's strokes of ``kind`` (scratches or dust) are light: dust's own if set."""
        return self.dust_light if kind == "dust" and self.dust_light is not None else self.stroke_light


def _scale(h: int, w: int) -> float:
    return max(1.0, min(h, w) / 384.0)


def _bezier(p0: np.ndarray, p1: np.ndarray, p2: np.ndarray, n: int) -> list[tuple[float, float]]:
    t = np.linspace(0, 1, n)[:, None]
    pts = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2
    return [(float(x), float(y)) for x, y in pts]


def _scratches(rng: np.random.Generator, h: int, w: int, draw: ImageDraw.ImageDraw) -> None:
    s, diag = _scale(h, w), float(np.hypot(h, w))
    for _ in range(int(rng.integers(1, 7))):
        start = rng.uniform([0, 0], [w, h])
        angle = rng.uniform(0, np.pi)
        length = rng.uniform(0.2, 0.9) * diag
        end = start + length * np.array([np.cos(angle), np.sin(angle)])
        mid = (start + end) / 2 + rng.normal(0, 0.08 * length, 2)
        draw.line(_bezier(start, mid, end, 32), fill=255, width=max(1, int(round(rng.uniform(1, 3) * s))), joint="curve")


def _dust(rng: np.random.Generator, h: int, w: int, draw: ImageDraw.ImageDraw) -> None:
    s = _scale(h, w)
    for _ in range(int(rng.integers(20, 200))):
        cx, cy = rng.uniform([0, 0], [w, h])
        rx, ry = rng.uniform(0.5, 2.5, 2) * s
        draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=255)


def _ribbon(draw: ImageDraw.ImageDraw, pts: np.ndarray, left: np.ndarray, right: np.ndarray) -> None:
    """Fill a path of varying width: one quad per segment (no self-intersecting outline) and a
    disc at each vertex so that turns stay closed; ``left``/``right`` are half-widths per vertex."""
    for i in range(len(pts) - 1):
        d = pts[i + 1] - pts[i]
        n = np.array([-d[1], d[0]]) / max(1e-6, float(np.hypot(*d)))
        quad = [pts[i] + n * left[i], pts[i + 1] + n * left[i + 1], pts[i + 1] - n * right[i + 1], pts[i] - n * right[i]]
        draw.polygon([(float(x), float(y)) for x, y in quad], fill=255)
    for p, a, b in zip(pts, left, right):
        r = min(a, b)
        if r >= 0.5:
            draw.ellipse([p[0] - r, p[1] - r, p[0] + r, p[1] + r], fill=255)
    draw.line([(float(x), float(y)) for x, y in pts], fill=255, width=1)  # never broken where it tapers


def _crack_path(rng: np.random.Generator, start: np.ndarray, heading: float, length: float, step: float) -> np.ndarray:
    pts, pos, course = [start], start.copy(), heading
    for _ in range(max(2, int(length / step))):
        course += rng.normal(0, 0.08)  # the crack's slow drift
        heading = course + 0.5 * (heading - course) + rng.normal(0, 0.4)  # and its jagged zig-zag about it
        pos = pos + rng.uniform(0.6, 1.4) * step * np.array([np.cos(heading), np.sin(heading)])
        pts.append(pos)
    return np.array(pts)


def _cracks(rng: np.random.Generator, h: int, w: int, ref: float, damage: Damage, draw: ImageDraw.ImageDraw) -> None:
    """Jagged, branching cracks whose width swells and tapers (lens-shaped segments)."""
    todo = []
    for _ in range(int(rng.integers(1, 4))):
        if rng.random() < 0.4:  # tears often run in from the border
            edge = int(rng.integers(4))
            start = np.array([rng.uniform(0, w), 0.0 if edge == 0 else float(h)]) if edge < 2 else np.array([0.0 if edge == 2 else float(w), rng.uniform(0, h)])
            heading = float(np.arctan2(h / 2 - start[1], w / 2 - start[0]) + rng.normal(0, 0.6))
        else:
            start, heading = rng.uniform([0, 0], [w, h]), float(rng.uniform(0, 2 * np.pi))
        todo.append((start, heading, rng.uniform(*damage.crack_length) * ref, rng.uniform(*damage.crack_width) * ref))
    budget = 10
    while todo and budget:
        budget -= 1
        start, heading, length, width = todo.pop()
        pts = _crack_path(rng, start, heading, length, rng.uniform(0.008, 0.02) * ref)
        t = np.linspace(0, 1, len(pts))
        swell = 0.3 + 0.7 * np.sin(np.pi * np.clip(t * rng.uniform(0.8, 1.5) - rng.uniform(0, 0.3), 0, 1)) ** 0.7
        lens = 0.6 + 0.8 * np.abs(np.sin(np.pi * t * rng.uniform(1, 4) + rng.uniform(0, np.pi)))  # wide and narrow stretches
        half = width / 2 * swell * lens
        left, right = half * rng.uniform(0.5, 1.4, len(pts)), half * rng.uniform(0.5, 1.4, len(pts))  # jagged edges
        _ribbon(draw, pts, left, right)
        for i in range(1, len(pts) - 1):
            if rng.random() < 0.06 and width > 1.5:
                branch_heading = float(np.arctan2(*(pts[i + 1] - pts[i])[::-1])) + rng.choice([-1, 1]) * rng.uniform(0.4, 1.3)
                todo.append((pts[i], branch_heading, length * rng.uniform(0.15, 0.5), 2 * half[i] * rng.uniform(0.3, 0.7)))


def _fold_band(rng: np.random.Generator, h: int, w: int, ref: float, damage: Damage) -> np.ndarray:
    """Signed position across an edge-to-edge fold, in units of its half-width (|t| < 1: in the band)."""
    if rng.random() < 0.5:
        p0, p1 = np.array([rng.uniform(0.1, 0.9) * w, -1.0]), np.array([rng.uniform(0.1, 0.9) * w, h + 1.0])
    else:
        p0, p1 = np.array([-1.0, rng.uniform(0.1, 0.9) * h]), np.array([w + 1.0, rng.uniform(0.1, 0.9) * h])
    half = rng.uniform(*damage.fold_width) * ref / 2
    d = (p1 - p0) / np.hypot(*(p1 - p0))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    across = (xx - p0[0]) * -d[1] + (yy - p0[1]) * d[0]
    along = (xx - p0[0]) * d[0] + (yy - p0[1]) * d[1]
    wobble = half * 0.4 * np.sin(2 * np.pi * along / (rng.uniform(0.2, 0.6) * ref) + rng.uniform(0, 2 * np.pi))
    return (across + wobble) / half, along


def _paint_fold(out: np.ndarray, rng: np.random.Generator, h: int, w: int, ref: float, damage: Damage) -> np.ndarray:
    t, along = _fold_band(rng, h, w, ref, damage)
    band = np.abs(t) < 1
    depth = 0.3 + 0.7 * (1 - np.abs(t[band]))
    shade = np.where(t[band] < 0, -rng.uniform(0.15, 0.45), rng.uniform(0.1, 0.35)) * depth  # lit side, shaded side
    v = out[band]
    v = np.where(shade[:, None] < 0, v * (1 + shade[:, None]), v + (255 - v) * shade[:, None])
    core = np.abs(t[band]) < rng.uniform(0.15, 0.35)
    period = rng.uniform(0.03, 0.1) * ref
    broken = np.sin(2 * np.pi * along[band] / period + rng.uniform(0, 6)) + np.sin(2 * np.pi * along[band] / (period * 2.7)) > rng.uniform(-0.8, 0.5)
    crease = core & broken
    v[crease] = v[crease] * 0.2 + rng.uniform(215, 250) * 0.8
    out[band] = v
    return band


def _emulsion(rng: np.random.Generator, h: int, w: int, ref: float, damage: Damage, draw: ImageDraw.ImageDraw) -> None:
    """Clusters of ragged flakes (star-shaped polygons with a noisy radius), often at the border."""
    for _ in range(int(rng.integers(1, 4))):
        if rng.random() < 0.5:
            centre = np.array([rng.choice([0.0, float(w)]), rng.uniform(0, h)]) if rng.random() < 0.5 else np.array([rng.uniform(0, w), rng.choice([0.0, float(h)])])
        else:
            centre = rng.uniform([0, 0], [w, h])
        size = rng.uniform(*damage.flake_size) * ref
        for _ in range(int(rng.integers(1, 7))):
            c = centre + rng.normal(0, size, 2)
            r = size * rng.uniform(0.15, 1.0)
            k = int(rng.integers(16, 40))
            ang = np.sort(rng.uniform(0, 2 * np.pi, k))
            harmonics = sum(rng.uniform(0, 0.25) * np.cos(m * ang + rng.uniform(0, 2 * np.pi)) for m in (2, 3, 5))
            rad = r * np.clip(1 + harmonics + rng.uniform(-0.25, 0.25, k), 0.2, None)
            draw.polygon([(float(c[0] + a * np.cos(b)), float(c[1] + a * np.sin(b))) for a, b in zip(rad, ang)], fill=255)


def _paper(rng: np.random.Generator, n: int, light: bool) -> np.ndarray:
    """n RGB values of exposed paper (light, slightly warm) or dark base, with grain."""
    base = rng.uniform(200, 250) if light else rng.uniform(10, 60)
    tint = np.array([1.0, 0.98, 0.93]) if light and rng.random() < 0.5 else np.ones(3)
    grain = rng.normal(0, rng.uniform(2, 8), n)[:, None]
    return np.clip(base * tint + grain, 0, 255)


def draw_damage(img: np.ndarray, rng: np.random.Generator, damage: Damage = Damage(), ref: float | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Draw structured damage; return the damaged float image and each drawn kind's H×W bool mask.

    ``ref`` is the short side of the photo the damage is sized for (default: ``img``'s). At
    least one kind is drawn. Pixels a kind would leave unchanged are not yet pushed here.
    """
    h, w = img.shape[:2]
    ref = float(min(h, w) if ref is None else ref)
    chosen = [k for k in damage.kinds if rng.random() < damage.p_kind.get(k, 0.5)]
    if not chosen:
        chosen = [damage.kinds[int(rng.integers(len(damage.kinds)))]]
    out = img.astype(np.float64)
    masks: dict[str, np.ndarray] = {}
    for kind in chosen:
        if kind == "folds":
            masks[kind] = _paint_fold(out, rng, h, w, ref, damage)
            continue
        layer = Image.new("L", (w, h), 0)
        draw = ImageDraw.Draw(layer)
        if kind == "scratches":
            _scratches(rng, h, w, draw)
        elif kind == "dust":
            _dust(rng, h, w, draw)
        elif kind == "cracks":
            _cracks(rng, h, w, ref, damage, draw)
        else:
            _emulsion(rng, h, w, ref, damage, draw)
        m = np.asarray(layer) > 0
        if kind in ("scratches", "dust"):
            light = rng.random() < damage.light_chance(kind)
            colour = np.full(3, rng.uniform(215, 255, 3).mean() if light else rng.uniform(0, 50, 3).mean())
            alpha = rng.uniform(*damage.opacity)
            out[m] = out[m] * (1 - alpha) + colour * alpha
        else:
            light = rng.random() < (0.75 if kind == "cracks" else 0.85)
            alpha = rng.uniform(0.8, 1.0)
            if light and kind == "cracks" and rng.random() < 0.5:  # the lifted edge casts a dark rim
                rim = np.asarray(layer.filter(ImageFilter.MaxFilter(2 * max(1, round(rng.uniform(0.002, 0.005) * ref)) + 1))) > 0
                rim &= ~m
                out[rim] *= rng.uniform(0.45, 0.8)
                masks[kind + "_rim"] = rim
            out[m] = out[m] * (1 - alpha) + _paper(rng, int(m.sum()), light) * alpha
        masks[kind] = m
    if "cracks_rim" in masks:
        masks["cracks"] = masks["cracks"] | masks.pop("cracks_rim")
    return out, masks


def add_damage(img: np.ndarray, rng: np.random.Generator, damage: Damage = Damage(), ref: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Draw structured damage over ``img``; return the damaged photo and its H×W mask (255 = damaged).

    The mask marks exactly the pixels that changed: a pixel the damage would leave unchanged
    (white paper over white sky) is pushed by 64 levels so that it still counts as damaged.
    """
    out, masks = draw_damage(img, rng, damage, ref)
    mask = np.zeros(img.shape[:2], dtype=bool)
    for m in masks.values():
        mask |= m
    result = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    same = mask & np.all(result == img, axis=2)
    if same.any():
        pushed = np.where(img[same] > 127, img[same].astype(int) - 64, img[same].astype(int) + 64)
        result[same] = pushed.astype(np.uint8)
    return result, mask.astype(np.uint8) * 255


def draw_decoys(img: np.ndarray, rng: np.random.Generator, ref: float | None = None, dark: bool = False) -> np.ndarray:
    """Paint 1-3 white objects that are *not* damage (a collar, a bow, a white flower) into the scene.

    Emulsion loss shows flat, grainy paper with ragged edges; white clothing is smooth-edged and
    shaded. Drawn on the clean photo before any degradation or damage, with no mask, they teach a
    detector that a bright patch is not damage by its brightness alone: the lite detector marked
    ``scratched/b``'s collar tips and ``c``'s hair bow, and the fill smeared them. Sized as flakes
    are (fractions of ``ref``, default the image's short side); edges antialiased (drawn at 4x).
    With ``dark`` they are black garments instead: larger, 12-55 grey, shaded, with a fine knit
    texture, as the black top on ``scratched/a`` that a detector trained on dark strokes marked
    (dark paper in a crack is flat and ragged-edged).
    """
    h, w = img.shape[:2]
    ref = float(min(h, w) if ref is None else ref)
    out = img.astype(np.float64)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    for _ in range(int(rng.integers(1, 4))):
        c = rng.uniform([0, 0], [w, h])
        r = rng.uniform(*((0.05, 0.25) if dark else (0.03, 0.12))) * ref
        k = int(rng.integers(3, 8))
        ang = np.sort(rng.uniform(0, 2 * np.pi, k))
        rad = r * rng.uniform(0.5, 1.0, k)
        big = Image.new("L", (4 * w, 4 * h), 0)
        ImageDraw.Draw(big).polygon([(float(4 * (c[0] + a * np.cos(b))), float(4 * (c[1] + a * np.sin(b)))) for a, b in zip(rad, ang)], fill=255)
        cover = np.asarray(big.resize((w, h), Image.Resampling.BOX), dtype=np.float64)[..., None] / 255.0
        if not cover.any():
            continue
        d = rng.uniform(0, 2 * np.pi)
        along = ((xx - c[0]) * np.cos(d) + (yy - c[1]) * np.sin(d)) / max(r, 1.0)
        if dark:
            shade = rng.uniform(12, 55) - rng.uniform(0, 10) * along + rng.uniform(0, 8) * np.cos(along * rng.uniform(2, 6))
            grain = rng.normal(0.0, 1.0, (h, w))
            grain = (grain + np.roll(grain, 1, 0) + np.roll(grain, 1, 1) + np.roll(grain, (1, 1), (0, 1))) / 2  # a knit, not film grain
            shade = shade + rng.uniform(3, 12) * grain
            tint = np.array([1.0, 1.0, 1.0]) if rng.random() < 0.5 else np.array([1.0, 0.9, 0.75])
        else:
            shade = rng.uniform(190, 245) - rng.uniform(5, 35) * along + rng.uniform(0, 25) * np.cos(along * rng.uniform(2, 6))  # light falls off; a soft fold
            tint = np.array([1.0, 1.0, 1.0]) if rng.random() < 0.6 else np.array([1.0, 0.97, 0.9])
        out = out * (1 - cover) + np.clip(shade[..., None] * tint, 0, 255) * cover
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def parse_kinds(kinds: Sequence[str] | None) -> tuple[str, ...]:
    """Validate a list of damage kinds (None or empty: all of them)."""
    from oldphoto.errors import UsageError

    if not kinds:
        return DAMAGE_KINDS
    bad = [k for k in kinds if k not in DAMAGE_KINDS]
    if bad:
        raise UsageError(f"unknown damage kind {bad[0]!r} (choose from {', '.join(DAMAGE_KINDS)})")
    return tuple(dict.fromkeys(kinds))
