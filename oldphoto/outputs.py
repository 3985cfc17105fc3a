"""Writing a restored photo's files: the output at the depth it should have, with its provenance.

Every entry point that writes a restoration (a folder run, :meth:`oldphoto.Restorer.restore_file`,
the web app) writes it here, so the bit depth, the carried EXIF, ICC and XMP, and the provenance
(:mod:`oldphoto.provenance`) are the same whichever way a photo came in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from oldphoto.deepio import DEEP_FORMATS
from oldphoto.errors import UsageError
from oldphoto.imageio import save_image
from oldphoto.inputs import Photo


def output_bits(bit_depth: str, fmt: str, name: str) -> str:
    """The depth to restore a photo at for an output in ``fmt``: ``16`` asked of a format that holds
    8 bits is a UsageError naming the output; ``auto`` becomes ``8`` there."""
    if fmt in DEEP_FORMATS:
        return bit_depth
    if bit_depth == "16":
        raise UsageError(f"{name}: {fmt} holds 8 bits per channel; --bit-depth 16 needs PNG or TIFF (e.g. --format png)")
    return "8"


def provenance_xmp(result: Any, photo: Photo, mask_file: Path | None = None, fmt: str | None = None) -> bytes:
    """The XMP packet for ``result``'s files: its provenance merged into the original's XMP.

    A JPEG holds one APP1 segment of XMP (64 KB): when the original's packet leaves no room,
    the JPEG gets the provenance alone rather than no XMP at all.
    """
    from oldphoto.imageio import JPEG_XMP_LIMIT
    from oldphoto.provenance import build_xmp, describe

    record = describe(result.provenance, photo.path, mask_file)
    packet = build_xmp(record, photo.xmp)
    return build_xmp(record) if fmt == "JPEG" and len(packet) > JPEG_XMP_LIMIT else packet


def write_restored(
    result: Any, photo: Photo, path: Path, fmt: str | None = None, *, provenance: bool = True,
    mask_file: Path | None = None, xmp: bytes | None = None,
) -> Path:
    """Write ``result`` (16-bit when it has ``deep`` samples) to ``path`` with the photo's EXIF, ICC
    and XMP, and its provenance unless ``provenance`` is False (``xmp`` when already built)."""
    if provenance and xmp is None:
        xmp = provenance_xmp(result, photo, mask_file, fmt)
    elif not provenance:
        xmp = photo.xmp
    pixels = result.deep if getattr(result, "deep", None) is not None else result.image
    return save_image(pixels, path, format=fmt, exif=photo.exif, icc_profile=photo.icc_profile, xmp=xmp)


def side_by_side(before: Photo | Image.Image, after: Any) -> Image.Image | np.ndarray:
    """The photo as read (left) beside its restoration (right), at the restoration's height, labelled.

    16-bit when the restoration is (``after`` has ``deep`` samples and ``before`` is a Photo), else 8-bit.
    """
    deep = getattr(after, "deep", None)
    after_image = after.image if hasattr(after, "image") else after
    if deep is None or not isinstance(before, Photo):
        return _side_by_side8(before.image if isinstance(before, Photo) else before, after_image)
    left = before.rgb_pixels(16)
    right = deep if deep.ndim == 3 else np.repeat(deep[..., None], 3, axis=2)
    if left.shape[:2] != right.shape[:2]:
        from oldphoto.pipeline import resize_pixels

        w = max(1, round(left.shape[1] * right.shape[0] / left.shape[0]))
        left = resize_pixels(left, (w, right.shape[0]), Image.Resampling.LANCZOS)
    pair = np.concatenate([left, right], axis=1)
    # The labelled band above them is the 8-bit comparison's, at 16 bits.
    labelled = np.asarray(_side_by_side8(before.image, after_image).convert("RGB"))
    band = labelled[: labelled.shape[0] - pair.shape[0]].astype(np.uint16) * 257
    canvas = np.concatenate([band, pair], axis=0)
    return canvas[..., 0] if deep.ndim == 2 and before.is_grey else canvas


def _side_by_side8(before: Image.Image, after: Image.Image) -> Image.Image:
    """The photo as read (left) beside its restoration (right), at the restoration's height, labelled.

    A dark band above the two says "before" and "after" over each (PIL's own font, so no
    font has to be installed or fetched); the photos themselves are not drawn on.
    """
    mode = "L" if before.mode == after.mode == "L" else "RGB"
    if before.size != after.size:
        w = max(1, round(before.width * after.height / before.height))
        before = before.resize((w, after.height), Image.Resampling.LANCZOS)
    size = max(_LABEL_MIN, min(_LABEL_MAX, round(after.height / 20)))
    band = round(size * 1.5)
    canvas = Image.new(mode, (before.width + after.width, band + after.height), _BAND if mode == "L" else (_BAND,) * 3)
    canvas.paste(before.convert(mode), (0, band))
    canvas.paste(after.convert(mode), (before.width, band))
    draw = ImageDraw.Draw(canvas)
    ink = _INK if mode == "L" else (_INK,) * 3
    for text, left, width in (("before", 0, before.width), ("after", before.width, after.width)):
        font = _label_font(draw, text, size, width)
        draw.text((left + width / 2, band / 2), text, fill=ink, font=font, anchor="mm")
    return canvas


#: Label size in pixels: 1/20 of the photo's height within these bounds (readable on a screen and in print).
_LABEL_MIN, _LABEL_MAX = 12, 96
#: The band's grey and the labels' grey.
_BAND, _INK = 24, 240


def _label_font(draw: ImageDraw.ImageDraw, text: str, size: int, width: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """PIL's default font at ``size``, smaller where ``text`` would not fit in ``width`` (down to 8 pixels)."""
    font = ImageFont.load_default(size)
    while size > 8 and draw.textlength(text, font=font) > 0.9 * width:
        size -= 1
        font = ImageFont.load_default(size)
    return font
