"""What the web page does, as plain functions over files and images: no Gradio in this module.

The page (:mod:`oldphoto.ui.app`) only wires components to these functions, and these
functions only use the library's own paths: photos are read with
:func:`oldphoto.inputs.load_photo`, the mask painted in the browser becomes a mask with
:func:`oldphoto.inputs.load_mask` (the same rule as ``--mask``), detection and restoration are
:meth:`oldphoto.Restorer.detect` and :meth:`oldphoto.Restorer.restore_detailed`, and files are
written with :func:`oldphoto.imageio.save_image` in the format the CLI would choose. So a photo
restored in the page with a mask gives the same bytes as ``oldphoto restore PHOTO OUT --mask
MASK`` with the mask file the page offers for download.

Everything is written under the session's temporary folder; nothing leaves it unless the user
downloads it.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from oldphoto.errors import ImageError, OldPhotoError, UsageError, one_line
from oldphoto.imageio import DEFAULT_MAX_PIXELS, choose_output_format, save_image
from oldphoto.inputs import Photo, load_mask, load_photo
from oldphoto.outputs import write_restored

#: The page's restoration choices and the ``mode`` each asks the Restorer for.
CHOICES = {"auto": "auto", "quality": "quality", "scratches": "auto"}
#: The colour the damage is painted in: bright enough (luma 226) that the mask rule reads it
#: as damaged, and visible on faded sepia and grey prints alike.
MASK_COLOUR = (255, 255, 0)
#: Opacity of the painted damage: the photo shows through, and the mask rule (transparency
#: composited onto black, damaged from half brightness up) still reads 226 × 0.75 ≥ 128.
MASK_OPACITY = 0.75
#: Smallest side the networks accept (see :func:`oldphoto.pipeline.check_photo_size`).
MIN_SIDE = 8
#: Longest side of the thumbnails that show which photos were taken.
THUMB_SIDE = 200


@dataclass
class Restored:
    """One restoration made in the page: its files, the pictures to compare, and a summary."""

    output: Path
    mask: Path | None
    before: Image.Image
    after: Image.Image
    message: str
    warnings: list[str] = field(default_factory=list)


def readable(exc: BaseException, path: Path | str | None = None, name: str | None = None) -> str:
    """An error as one line for the page, with the upload's temporary path replaced by its name."""
    text = str(exc) if isinstance(exc, OldPhotoError) else f"something went wrong: {one_line(exc, named=True)}"
    if path is not None:
        text = text.replace(str(path), name or Path(path).name)
    return " ".join(text.split())


def open_photo(path: Path | str, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Photo:
    """Read an uploaded photo as the CLI does; raise :class:`ImageError` (naming only the file) if unusable.

    Beyond what :func:`load_photo` refuses (non-images, truncated files, decompression bombs),
    a photo too small to restore is refused here, at upload, rather than at restore.
    """
    path = Path(path)
    try:
        photo = load_photo(path, max_pixels=max_pixels)
    except ImageError as exc:
        raise ImageError(readable(exc, path)) from None
    w, h = photo.image.size
    if w < MIN_SIDE or h < MIN_SIDE:
        raise ImageError(f"{path.name}: photo is {w}×{h} pixels; at least {MIN_SIDE}×{MIN_SIDE} is needed")
    photo.warnings = [readable(ImageError(w), path) for w in photo.warnings]
    return photo


def mask_layer(mask: Image.Image | None, size: tuple[int, int]) -> Image.Image:
    """A damage mask as a transparent "RGBA" layer with the damage painted in :data:`MASK_COLOUR`."""
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    if mask is not None:
        paint = Image.new("RGBA", size, (*MASK_COLOUR, round(255 * MASK_OPACITY)))
        layer.paste(paint, mask=load_mask(mask, size))
    return layer


def mask_from_layers(layers: list[Any] | None, size: tuple[int, int]) -> Image.Image:
    """The binary damage mask ("L", 0/255) of the page's painted layers, by the ``--mask`` rule.

    Each layer is read with :func:`oldphoto.inputs.load_mask` (transparent = undamaged, damaged
    from half brightness up, nearest-neighbour resize to the photo); a pixel damaged in any
    layer is damaged.
    """
    combined = np.zeros((size[1], size[0]), dtype=bool)
    for layer in layers or []:
        if layer is None:
            continue
        if isinstance(layer, (str, Path)):
            with Image.open(layer) as opened:
                layer = opened.copy()
        combined |= np.asarray(load_mask(layer, size)) > 0
    return Image.fromarray(combined.astype(np.uint8) * 255, mode="L")


def thumbnail(photo: Photo) -> Image.Image:
    """A small upright RGB copy of an uploaded photo, for the list of photos taken (any format shows)."""
    small = photo.image.convert("RGB")
    small.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.Resampling.LANCZOS)
    return small


def faces_off_reason(restorer: Any) -> str | None:
    """Why the page cannot enhance faces, in words for whoever uses the page; None when it can.

    Faces need the faces extra (dlib and its landmark model), and a face model: the bundled
    lite model has none, and a ``--weights`` folder must hold ``face256``. Published weights
    from the cache or the Hub have one (downloaded on first use). The restorer's model is
    chosen here if it was not yet (``oldphoto ui`` chooses before the page opens).
    """
    from oldphoto.faces import faces_available

    if not faces_available():
        return "Faces are not enhanced: the face add-on is not installed on this computer (oldphoto's faces extra)."
    choice = restorer.choose(progress=False)
    if choice.is_lite:
        return "Faces are not enhanced: the built-in lite model has no face model (it needs the published weights)."
    weights = getattr(restorer, "weights", None)
    if weights is not None:
        from oldphoto.weights.checkpoint import has_checkpoint

        if not has_checkpoint(weights, "face256"):
            return f"Faces are not enhanced: the weights folder {Path(weights).name} has no face model."
    return None


def damaged_share(mask: Image.Image | None) -> tuple[int, float]:
    """How many pixels of ``mask`` are damaged, and what fraction of the photo that is."""
    if mask is None:
        return 0, 0.0
    a = np.asarray(mask) > 0
    return int(a.sum()), float(a.mean())


class Session:
    """The page's work: one Restorer, one temporary folder, one photo restored at a time.

    ``restorer`` is an :class:`oldphoto.Restorer`. ``faces_off`` says, once for the session,
    why faces cannot be enhanced (see :func:`faces_off_reason`), or is None when they can.
    """

    def __init__(self, restorer: Any, folder: Path | str, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> None:
        self.restorer = restorer
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.max_pixels = max_pixels
        self.faces_off = faces_off_reason(restorer)
        self._count = itertools.count(1)
        self._lock = threading.Lock()

    def open(self, path: Path | str) -> Photo:
        """The uploaded photo at ``path`` (see :func:`open_photo`)."""
        return open_photo(path, max_pixels=self.max_pixels)

    def save_thumbnail(self, photo: Photo) -> Path:
        """Write the photo's :func:`thumbnail` into the session's folder as a JPEG; return its path."""
        folder = self.folder / "thumbs"
        folder.mkdir(exist_ok=True)
        return save_image(thumbnail(photo), folder / f"{next(self._count)}.jpg", format="JPEG")

    def detect(self, path: Path | str) -> Image.Image:
        """The detector's damage mask ("L", 255 = damaged) of the uploaded photo at ``path``."""
        photo = self.open(path)
        return self.restorer.detect(photo.image.convert("RGB"))

    def restore(
        self,
        path: Path | str,
        mask: Image.Image | None,
        *,
        choice: str = "auto",
        faces: bool | None = None,
        face_strength: float = 1.0,
        progress: Callable[[int, int], None] | None = None,
    ) -> Restored:
        """Restore the uploaded photo at ``path`` as ``oldphoto restore PHOTO OUT [--mask MASK]`` would.

        ``mask`` is the binary mask painted in the page (or None). ``choice`` is ``auto``
        (scratch mode when the mask marks any damage, quality otherwise), ``quality`` (the mask
        is not used) or ``scratches`` (the detector finds the damage if none is painted). The
        output is ``NAME-restored.EXT`` in the photo's own format (PNG for formats the CLI does
        not write), with its EXIF and ICC profile; the mask used is ``NAME-mask.png``.
        """
        if choice not in CHOICES:
            raise UsageError(f"choose {', '.join(CHOICES)}, not {choice!r}")
        path = Path(path)
        photo = self.open(path)
        size = photo.image.size
        damage = load_mask(mask, size) if mask is not None else None
        if choice == "quality" or (damage is not None and not np.asarray(damage).any() and choice == "auto"):
            damage = None
        detect = choice == "scratches" and (damage is None or not np.asarray(damage).any())
        if detect:
            damage = None
        self._set_faces(faces, face_strength)
        with self._lock:
            try:
                result = self.restorer.restore_detailed(
                    photo, damage, mode=CHOICES[choice], detect_scratches=detect,
                    **({"progress": progress} if progress is not None else {}),
                )
            except OldPhotoError as exc:
                raise type(exc)(readable(exc, path)) from None
            folder = self.folder / f"restore-{next(self._count)}"
            folder.mkdir(parents=True)
            fmt, ext = choose_output_format(photo.format)
            used = result.mask
            mask_path = save_image(used, folder / f"{path.stem}-mask.png") if used is not None else None
            # The provenance names the mask file offered for download, as the CLI's names the one given to --mask.
            output = write_restored(result, photo, folder / f"{path.stem}-restored{ext}", fmt, mask_file=mask_path)
        count, share = damaged_share(used)
        mask_text = f"mask: {count} damaged pixels ({share:.2%})" if used is not None else "no mask used"
        # Faces the page cannot enhance were explained once, beside the options: not again here.
        face_text = "" if self.faces_off else f", {_face_words(result)}"
        message = (
            f"Restored {path.name} ({result.image.width}×{result.image.height}) in {result.mode} mode"
            f"{_model_words(getattr(result, 'model', ''))}, "
            f"{mask_text}{face_text}, {result.seconds:.1f} s."
        )
        return Restored(
            output=output, mask=mask_path, before=photo.image, after=result.image, message=message,
            warnings=list(photo.warnings),
        )

    def _set_faces(self, faces: bool | None, strength: float) -> None:
        """Apply the page's face settings to the Restorer (they are per photo here, per run in the CLI)."""
        from oldphoto.options import check_face_strength

        check_face_strength(strength)
        if faces and self.faces_off:
            raise UsageError(self.faces_off)
        self.restorer.faces = False if self.faces_off else faces
        self.restorer.face_strength = strength


def _face_words(result: Any) -> str:
    """``faces off`` / ``no face found`` / ``N of M faces enhanced``."""
    if not result.faces_enabled:
        return "faces off"
    if not result.faces:
        return "no face found"
    return f"{sum(bool(f.get('enhanced')) for f in result.faces)} of {len(result.faces)} faces enhanced"


def _model_words(model: str) -> str:
    """`` with the bundled lite model`` / `` with the published weights`` / `` with the weights in DIR``."""
    if not model:
        return ""
    if model == "lite":
        return " with the bundled lite model"
    return " with the published weights" if model == "published" else f" with the weights in {model}"
