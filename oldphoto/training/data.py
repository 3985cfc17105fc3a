"""Training data: folders of photos decoded once, random crops, and the batches of each stage.

Every folder is decoded into memory at start-up (the project's datasets are a few hundred
small photos), through the same reader as ``restore``, so a corrupt file fails at once with
one line naming it. Samples are drawn from one ``numpy`` generator owned by the trainer,
whose state is saved in every checkpoint: a resumed run draws exactly the batches the
uninterrupted run would have drawn.

Deviation from the published loaders, for CPU speed: the synthetic degradation runs on the
crop, not on the whole photo (the published scratch-mapping loader does the same; the others
degrade the full photo first). Blur, noise and JPEG act locally, and the resampling range is
relative to the side, so the statistics of a crop hardly change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from oldphoto.errors import ImageError, UsageError
from oldphoto.pipeline import paint_damage
from oldphoto.training.damage import draw_decoys
from oldphoto.training.degrade import PUBLISHED, Damage, Recipe, add_damage, degrade, stays_clean, to_grey


DETECTION_SHORT_SIDE = 256  # the short side every photo is resized to for detection (oldphoto.detection)


def list_photos(folder: Path) -> list[Path]:
    """Photo files under ``folder`` (recursive, sorted); one-line error when missing or empty.

    ``folder`` may also be a ``.txt`` list: one photo path a line, relative to the list's own
    folder, blank lines and ``#`` comments ignored. That is how a recipe trains on part of a
    folder (``weights/data/live1-without-kodak.txt`` leaves out the Kodak pictures of
    ``live1/`` that leak the held-out ``kodak24``).
    """
    from oldphoto.imageio import READABLE_EXTENSIONS

    folder = Path(folder)
    if not folder.exists():
        raise UsageError(f"{folder}: no such data folder")
    if folder.is_file() and folder.suffix.lower() == ".txt":
        return _listed_photos(folder)
    if not folder.is_dir():
        raise UsageError(f"{folder}: not a folder (nor a .txt list of photos)")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in READABLE_EXTENSIONS)
    if not files:
        raise UsageError(f"{folder}: no photos in this data folder")
    return files


def _listed_photos(listing: Path) -> list[Path]:
    files = []
    for n, line in enumerate(listing.read_text(encoding="utf-8").splitlines(), 1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        path = listing.parent / entry
        if not path.is_file():
            raise UsageError(f"{listing}:{n}: {entry}: no such photo")
        files.append(path)
    if not files:
        raise UsageError(f"{listing}: lists no photos")
    return files


def load_photos(folders: Sequence[Path], *, min_side: int = 8) -> tuple[list[np.ndarray], list[str]]:
    """Decode every photo of ``folders`` to H×W×3 uint8 (grey photos as three equal channels).

    Returns the arrays and their paths. A file that cannot be decoded is an
    :class:`ImageError` naming it; a photo smaller than ``min_side`` is refused likewise.
    """
    from oldphoto.inputs import load_photo

    images, names = [], []
    for folder in folders:
        for path in list_photos(folder):
            loaded = load_photo(path)
            if min(loaded.image.size) < min_side:
                raise ImageError(f"{path}: photo is {loaded.image.width}×{loaded.image.height}; too small to train on")
            images.append(np.asarray(loaded.image.convert("RGB")))
            names.append(str(path))
    return images, names


def random_crop(img: np.ndarray, size: int, rng: np.random.Generator, flip: bool = True, zoom: float = 1.0) -> np.ndarray:
    """A uniform ``size``² crop with a horizontal flip (p = ½); short sides below ``size`` are
    first resized bicubically to ``size`` (the published rule for small photos).

    With ``zoom`` Z > 1 the crop is cut from the photo enlarged bicubically by z, uniform in
    [1, Z] (a smaller window, enlarged to ``size``): a softer photo, as a film scan is.
    """
    if zoom > 1:
        window = max(1, round(size / rng.uniform(1.0, zoom)))
        crop = random_crop(img, window, rng, flip)
        return np.asarray(Image.fromarray(crop).resize((size, size), Image.Resampling.BICUBIC))
    h, w = img.shape[:2]
    if min(h, w) < size:
        s = size / min(h, w)
        nw, nh = max(size, round(w * s)), max(size, round(h * s))
        img = np.asarray(Image.fromarray(img).resize((nw, nh), Image.Resampling.BICUBIC))
        h, w = nh, nw
    top = int(rng.integers(0, h - size + 1))
    left = int(rng.integers(0, w - size + 1))
    crop = img[top : top + size, left : left + size]
    if flip and rng.random() < 0.5:
        crop = crop[:, ::-1]
    return np.ascontiguousarray(crop)


def to_batch(crops: Sequence[np.ndarray]) -> torch.Tensor:
    """N crops (H×W×3 uint8) to an N×3×H×W float tensor in [−1, 1]."""
    arr = np.stack(crops).astype(np.float32) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


@dataclass
class Batch:
    """One training batch: input images, target images, flags and masks (each may be absent)."""

    x: torch.Tensor
    y: torch.Tensor | None = None
    real: torch.Tensor | None = None  # VAE_A: 1 for a real old photo, 0 for a synthetic one
    mask: torch.Tensor | None = None  # N×1×H×W in {0, 1}, 1 = damaged


class Sampler:
    """Draws the batches of every stage from decoded photo pools with one generator."""

    def __init__(
        self,
        clean: list[np.ndarray],
        old: list[np.ndarray] | None = None,
        *,
        crop: int,
        recipe: Recipe = PUBLISHED,
        damage: Damage | None = None,
        rng: np.random.Generator,
        zoom: float = 1.0,
        clean_zoom: float = 1.0,
    ) -> None:
        self.clean, self.old = clean, old or []
        self.crop, self.recipe, self.damage, self.rng, self.zoom = crop, recipe, damage, rng, zoom
        self.clean_zoom = clean_zoom

    def _pick(self, pool: list[np.ndarray]) -> np.ndarray:
        return pool[int(self.rng.integers(len(pool)))]

    def _grey(self, *imgs: np.ndarray) -> tuple[np.ndarray, ...]:
        if self.rng.random() < self.recipe.p_grey:
            return tuple(to_grey(i) for i in imgs)
        return imgs

    def _degrade(self, crop: np.ndarray, seed: int | None = None) -> np.ndarray:
        """``crop`` through the recipe, from ``seed`` (default: the next one the generator draws)."""
        seed = int(self.rng.integers(2**63)) if seed is None else seed
        return degrade(crop, np.random.default_rng(seed), self.recipe)[0]

    def domain_a(self, n: int) -> Batch:
        """VAE_A: each sample a real old photo (p = ½) or a degraded clean one; grey p = 0.1."""
        crops, real = [], []
        for _ in range(n):
            is_real = bool(self.old) and self.rng.random() < 0.5
            if is_real:
                crop = random_crop(self._pick(self.old), self.crop, self.rng)
            else:
                crop = self._degrade(random_crop(self._pick(self.clean), self.crop, self.rng))
            crops.append(self._grey(crop)[0])
            real.append(is_real)
        return Batch(x=to_batch(crops), real=torch.tensor(real))

    def domain_b(self, n: int) -> Batch:
        """VAE_B: clean crops; grey p = 0.1."""
        return Batch(x=to_batch([self._grey(random_crop(self._pick(self.clean), self.crop, self.rng))[0] for _ in range(n)]))

    def pairs(self, n: int, *, paint: str | None = None) -> Batch:
        """Mapping: (degraded, clean) crop pairs, grey together (p = 0.1); with damage when set.

        With damage, half the samples stay hole-free as in the published scratch training;
        ``paint`` (``white`` as the published loader does with its masks, or ``smooth``) then
        paints the damaged pixels exactly as ``restore`` does before the scratch mapping
        (:func:`oldphoto.pipeline.paint_damage`). With ``clean_zoom`` > 1 the pairs the recipe
        keeps nearly clean are cut at that zoom (soft but clean photos, to be left alone); the
        degradation's seed is then drawn before the crop, so at 1 everything draws as before.
        """
        xs, ys, masks = [], [], []
        for _ in range(n):
            seed = int(self.rng.integers(2**63)) if self.clean_zoom > 1 else None  # else drawn after the crop, as before
            zoom = self.clean_zoom if seed is not None and stays_clean(seed, self.recipe) else self.zoom
            y = random_crop(self._pick(self.clean), self.crop, self.rng, zoom=zoom)
            x = self._degrade(y, seed)
            x, y = self._grey(x, y)
            m = np.zeros(x.shape[:2], dtype=np.uint8)
            if self.damage is not None and self.rng.random() < 0.5:
                x, m = add_damage(x, np.random.default_rng(int(self.rng.integers(2**63))), self.damage)
                if paint:
                    x = paint_damage(x, m, paint)
            xs.append(x)
            ys.append(y)
            masks.append(m)
        mask = torch.from_numpy(np.stack(masks).astype(np.float32) / 255.0)[:, None]
        return Batch(x=to_batch(xs), y=to_batch(ys), mask=mask if self.damage is not None else None)

    def detection(self, n: int, rescale: float = 1.0, p_damage: float = 0.8, p_rescan: float = 0.0,
                  damage_zoom: float = 1.0, damage: Damage | None = None, p_decoy: float = 0.0,
                  min_change: float = 0.0, p_dark_decoy: float = 0.0, colour: bool = False) -> Batch:
        """Detector: degraded crops, damaged with probability ``p_damage``, as grey N×1×H×W in
        [−1, 1] (N×3×H×W RGB with ``colour``), with the damage masks as targets (an undamaged crop teaches what is not a stroke).

        ``rescale`` < 1 draws each sample on a crop 1/s times larger (s uniform in [rescale, 1])
        and shrinks photo and mask to the crop size the way detection shrinks a photo to its
        working size (bilinear, no antialiasing), so the detector learns the softened damage
        it meets at inference, not only pixel-sharp strokes; the mask keeps what shrinks to
        at least 0.3. At 1 the masks are exact. A share ``p_rescan`` of the crops is damaged
        first and degraded after (the print cracked, then faded and was scanned), so their
        damage is as soft and faint as on a real old print; the mask still marks it all. Damage that scales with the photo (cracks,
        folds, emulsion loss) is sized for a photo whose short side, at the crop's final
        scale, is detection's working 256 px: the crop is a part of such a photo; with
        ``damage_zoom`` Z > 1 that working size is 256·z, z uniform in [1, Z], as a card that
        also runs the UNet at larger sizes shows the same damage wider (at 1 nothing more is
        drawn from the generator, so the samples stay exactly as before). ``damage`` overrides the
        sampler's own (the detector stage's training damage). A share ``p_decoy`` of the crops get
        white objects that are not damage painted into the scene first (``damage.draw_decoys``; at 0
        nothing more is drawn from the generator), and a share ``p_dark_decoy`` black garments.
        With ``min_change`` > 0 the mask leaves out damaged pixels whose grey level moved by less
        than that many levels once the crop is degraded (a dark stroke over black hair, a thin
        scratch blurred away in a rescanned crop): nobody can see them, so the detector is not
        taught to guess them.
        """
        xs, masks = [], []
        damage = damage or self.damage or Damage()
        for _ in range(n):
            big = self.crop if rescale >= 1 else int(round(self.crop / self.rng.uniform(rescale, 1.0)))
            crop = random_crop(self._pick(self.clean), big, self.rng)
            for share, dark in ((p_decoy, False), (p_dark_decoy, True)):
                if share > 0 and self.rng.random() < share:
                    crop = draw_decoys(crop, np.random.default_rng(int(self.rng.integers(2**63))), ref=DETECTION_SHORT_SIDE * big / self.crop, dark=dark)
            rescan = p_rescan > 0 and self.rng.random() < p_rescan
            x = crop if rescan else self._degrade(crop)
            m = np.zeros(x.shape[:2], dtype=np.uint8)
            if self.rng.random() < p_damage:  # sized for the photo the crop is part of: its short side at detection's 256
                ref = DETECTION_SHORT_SIDE * big / self.crop
                if damage_zoom > 1:
                    ref *= self.rng.uniform(1.0, damage_zoom)
                before = x
                x, m = add_damage(x, np.random.default_rng(int(self.rng.integers(2**63))), damage, ref=ref)
            if rescan:
                seed = int(self.rng.integers(2**63))
                x = self._degrade(x, seed)
                if min_change > 0 and m.any():  # the same degradation of the undamaged crop
                    before = self._degrade(before, seed)
            if min_change > 0 and m.any():
                m = np.where(np.abs(_luma(x) - _luma(before)) >= min_change, m, 0).astype(np.uint8)
            if big != self.crop:
                x, m = shrink(x, m, self.crop)
            xs.append(x)
            masks.append(m)
        return Batch(x=detector_batch(xs, colour), mask=torch.from_numpy(np.stack(masks).astype(np.float32) / 255.0)[:, None])


def _luma(rgb: np.ndarray) -> np.ndarray:
    """Grey level as Pillow's "L" weighs the channels (ITU-R 601), in float."""
    return rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def shrink(photo: np.ndarray, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A square photo and its mask to ``size``² as detection resizes (bilinear, no antialiasing)."""
    both = torch.from_numpy(np.concatenate([photo, mask[..., None]], axis=2).astype(np.float32)).permute(2, 0, 1)[None]
    small = torch.nn.functional.interpolate(both, size=(size, size), mode="bilinear", align_corners=False)[0].permute(1, 2, 0)
    out = small.numpy()
    return np.clip(np.rint(out[..., :3]), 0, 255).astype(np.uint8), ((out[..., 3] >= 0.3 * 255) * 255).astype(np.uint8)


def grey_batch(crops: Sequence[np.ndarray]) -> torch.Tensor:
    """RGB crops to N×1×H×W grey (Pillow's "L", as detection does) in [−1, 1]."""
    grey = [np.asarray(Image.fromarray(c).convert("L")) for c in crops]
    return torch.from_numpy(np.stack(grey).astype(np.float32) / 127.5 - 1.0)[:, None]


def detector_batch(crops: Sequence[np.ndarray], colour: bool = False) -> torch.Tensor:
    """RGB crops as the detection UNet reads them, in [−1, 1]: N×3×H×W with ``colour``, else grey N×1×H×W."""
    if not colour:
        return grey_batch(crops)
    return torch.from_numpy(np.stack(crops).astype(np.float32) / 127.5 - 1.0).permute(0, 3, 1, 2).contiguous()


def centre_crop(img: np.ndarray, size: int) -> np.ndarray:
    """The central ``size``² crop (the whole photo, cut to a multiple of 4, when smaller)."""
    h, w = img.shape[:2]
    ch, cw = min(size, h) // 4 * 4, min(size, w) // 4 * 4
    top, left = (h - ch) // 2, (w - cw) // 2
    return img[top : top + ch, left : left + cw]
