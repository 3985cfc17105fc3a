"""Image files in and out: formats, pages, orientation, metadata, decompression bombs, atomic writes.

:func:`read_image` decodes a file's first page upright, in the file's own mode, with the EXIF
(orientation reset) and ICC profile to carry to the output; :mod:`oldphoto.inputs` then makes
a photo or a mask of it. :func:`save_image` writes where the format can hold them. Unreadable
or unwritable files raise :class:`ImageError` with one line naming the file and the problem.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from oldphoto.deepio import combine, is_deep_colour, orient, read_low_bytes

from oldphoto.errors import ImageError, UsageError, one_line
from oldphoto.fsutil import atomic_path

#: Largest photo accepted by default: 250 megapixels is a 10×8 inch print scanned at
#: 1,800 dpi with room to spare (about 750 MB as 8-bit RGB), far beyond any genuine scan
#: this tool can restore, yet far below what a crafted 40-byte header can claim.
DEFAULT_MAX_PIXELS = 250_000_000
#: Formats we write and the extension each gets; anything else read (GIF, ...) becomes PNG.
WRITABLE = {"PNG": ".png", "JPEG": ".jpg", "TIFF": ".tif", "WEBP": ".webp", "BMP": ".bmp"}
#: Extensions of the files a folder walk picks up as photos (lower case).
READABLE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".tif", ".tiff", ".webp", ".bmp", ".dib", ".gif"}
)
_FORMAT_ALIASES = {"JPG": "JPEG", "JPE": "JPEG", "TIF": "TIFF"}
_KEEPS_EXIF = {"JPEG", "PNG", "TIFF", "WEBP"}
_KEEPS_ICC = {"JPEG", "PNG", "TIFF", "WEBP"}
#: A JPEG APP1 segment holds at most 65,533 bytes of EXIF after its "Exif\0\0" header.
_JPEG_EXIF_LIMIT = 65_527
#: Descriptive EXIF tags worth carrying out of a TIFF; a TIFF's own tags (strip offsets,
#: bits per sample, compression...) describe that file's layout and would be lies elsewhere.
_TIFF_DESCRIPTIVE_TAGS = {270, 271, 272, 274, 282, 283, 296, 305, 306, 315, 33432, 0x8769, 0x8825}
_ORIENTATION = 0x0112
#: A JPEG APP1 segment holds at most 65,504 bytes of XMP after its namespace header.
JPEG_XMP_LIMIT = 65_504


@dataclass
class ImageFile:
    """A decoded file before it is made a photo or a mask: first page, upright, in the file's mode."""

    image: Image.Image
    path: Path
    format: str | None = None
    exif: bytes | None = None
    icc_profile: bytes | None = None
    warnings: list[str] = field(default_factory=list)
    #: A 16-bit colour file's samples (H×W×3 or ×4 uint16, upright), which ``image`` holds only 8 bits of.
    deep: np.ndarray | None = None
    #: The file's own XMP packet, to carry to the output.
    xmp: bytes | None = None


def _bomb_message(path: Path, w: int, h: int, max_pixels: int) -> str:
    return (
        f"{path}: {w}×{h} = {w * h / 1e6:.0f} megapixels exceeds the limit of {max_pixels / 1e6:g} "
        "(a possible decompression bomb); raise --max-pixels to allow it"
    )


def _open(path: Path, max_pixels: int | None) -> Image.Image:
    """Open lazily (header only), refusing decompression bombs before any pixel is decoded."""
    if not path.is_file():
        raise ImageError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: empty file")
    # Pillow's global limit is swapped for ours (checked below from the header), so the two
    # cannot disagree and a raised --max-pixels is honoured.
    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        image = Image.open(path)
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file (or a format Pillow cannot read)") from None
    except Image.DecompressionBombError:
        raise ImageError(f"{path}: refused as a possible decompression bomb; raise --max-pixels to allow it") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"{path}: cannot read image ({one_line(exc)})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    w, h = image.size
    if max_pixels and w * h > max_pixels:
        image.close()
        raise ImageError(_bomb_message(path, w, h, max_pixels))
    return image


def _portable_exif(exif: Image.Exif, fmt: str | None) -> bytes | None:
    """EXIF to carry to the output, Orientation reset to 1 (the pixels are now upright)."""
    if fmt == "TIFF":
        for tag in [t for t in exif if t not in _TIFF_DESCRIPTIVE_TAGS]:
            del exif[tag]
    if not len(exif):
        return None
    if _ORIENTATION in exif:
        exif[_ORIENTATION] = 1
    return exif.tobytes()


def read_image(path: Path | str, *, max_pixels: int | None = DEFAULT_MAX_PIXELS, what: str = "image") -> ImageFile:
    """Decode a photo or mask file: its first page/frame, EXIF orientation applied, in its own mode.

    ``max_pixels`` (``None`` or 0: no limit) is checked from the header before decoding.
    Turning the pixels into a photo or a mask is :mod:`oldphoto.inputs`' job.
    """
    path = Path(path)
    warnings: list[str] = []
    with _open(path, max_pixels) as image:
        fmt = image.format
        icc = image.info.get("icc_profile") or None
        try:
            frames = getattr(image, "n_frames", 1)
            if frames > 1:
                kind = "pages" if fmt == "TIFF" else "frames"
                warnings.append(f"{path}: has {frames} {kind}; restoring the first only")
                image.seek(0)
            deep_colour = is_deep_colour(image)
            image.load()
            xmp = xmp_bytes(image.info.get("xmp"))
            exif = image.getexif()
            deep = combine(image, read_low_bytes(path)) if deep_colour else None
            if deep is not None:
                deep = orient(deep, int(exif.get(_ORIENTATION, 1) or 1))
            oriented = ImageOps.exif_transpose(image)
        except Image.DecompressionBombError:
            raise ImageError(f"{path}: refused as a possible decompression bomb; raise --max-pixels to allow it") from None
        except (OSError, ValueError, SyntaxError, EOFError) as exc:
            raise ImageError(f"{path}: cannot decode {what} ({one_line(exc)})") from None
    return ImageFile(
        image=oriented, path=path, format=fmt, exif=_portable_exif(exif, fmt), icc_profile=icc, warnings=warnings,
        deep=deep, xmp=xmp,
    )


def xmp_bytes(value: object) -> bytes | None:
    """A file's XMP packet as Pillow hands it over (bytes, str, or a one-item tuple from TIFF), as bytes."""
    if isinstance(value, tuple):
        value = value[0] if value else None
    if isinstance(value, str):
        value = value.encode("utf-8")
    return bytes(value) if value else None


def normalise_format(name: str) -> str:
    """``jpg``/``tif``/``png``... to the Pillow format we write, or raise UsageError."""
    fmt = name.strip().lstrip(".").upper()
    fmt = _FORMAT_ALIASES.get(fmt, fmt)
    if fmt not in WRITABLE:
        raise UsageError(f"cannot write format {name!r} (choose {', '.join(f.lower() for f in WRITABLE)})")
    return fmt


def format_for_extension(suffix: str) -> str | None:
    """The Pillow format of a file extension (``.JPG`` -> ``JPEG``), or None if unknown."""
    return Image.registered_extensions().get(suffix.lower())


def choose_output_format(source_format: str | None, requested: str | None = None) -> tuple[str, str]:
    """``(format, extension)`` for a photo's output: ``requested``, else the input's, else PNG."""
    if requested:
        fmt = normalise_format(requested)
    else:
        fmt = source_format.upper() if source_format and source_format.upper() in WRITABLE else "PNG"
    return fmt, WRITABLE[fmt]


def output_format(path: Path | str, requested: str | None = None, source_format: str | None = None) -> str:
    """The Pillow format to write ``path`` as: ``requested``, else the output's extension.

    ``source_format`` is used only when ``path`` has no extension at all.
    """
    if requested:
        return normalise_format(requested)
    ext = Path(path).suffix
    fmt = format_for_extension(ext) if ext else None
    if fmt in WRITABLE:
        return fmt
    if not ext and source_format:
        return choose_output_format(source_format)[0]
    raise UsageError(f"{path}: cannot write '{ext or 'no extension'}' files (use .png, .jpg, .tif, .webp or .bmp)")


def save_image(
    image: Image.Image | np.ndarray,
    path: Path | str,
    *,
    format: str | None = None,
    exif: bytes | None = None,
    icc_profile: bytes | None = None,
    xmp: bytes | None = None,
) -> Path:
    """Write ``image`` atomically, keeping EXIF, the ICC profile and an XMP packet where the format allows.

    ``image`` is a PIL image, or a uint16 array (H×W grey or H×W×3 RGB) written as a 16-bit
    PNG or TIFF (:mod:`oldphoto.deepio`; other formats hold 8 bits and refuse it).
    The file appears complete or not at all (temp file in the same folder, then rename).
    JPEG and WebP are written at quality 95, JPEG without chroma subsampling. WebP has no
    grey mode, so a grey photo saved as WebP reads back as RGB.
    """
    path = Path(path)
    fmt = output_format(path, format)
    if isinstance(image, np.ndarray):
        return _save_deep(image, path, fmt, exif, icc_profile, xmp)
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    if fmt == "TIFF" and (xmp or _has_sub_ifds(exif)):
        return _save_deep(np.asarray(image), path, fmt, exif, icc_profile, xmp)
    options: dict[str, object] = {}
    if exif and fmt in _KEEPS_EXIF and not (fmt == "JPEG" and len(exif) > _JPEG_EXIF_LIMIT):
        options["exif"] = exif
    if icc_profile and fmt in _KEEPS_ICC:
        options["icc_profile"] = icc_profile
    if xmp:
        options.update(_xmp_options(fmt, xmp))
    if fmt == "JPEG":
        options.update(quality=95, subsampling=0)
    elif fmt == "WEBP":
        options.update(quality=95)
    elif fmt == "TIFF":
        options.update(compression="tiff_deflate")
    try:
        with atomic_path(path) as tmp:
            image.save(tmp, format=fmt, **options)
    except OSError as exc:
        raise ImageError(f"{path}: cannot write output ({one_line(exc) if not exc.strerror else exc.strerror})") from None
    return path


def _has_sub_ifds(exif: bytes | None) -> bool:
    """Whether EXIF bytes point at an EXIF or GPS sub-IFD (which Pillow's TIFF writer cannot write)."""
    if not exif:
        return False
    tags = Image.Exif()
    tags.load(exif)
    return 0x8769 in tags or 0x8825 in tags


def _xmp_options(fmt: str, xmp: bytes) -> dict[str, object]:
    """Pillow's save options that embed ``xmp`` in ``fmt``: PNG iTXt, JPEG APP1, WebP chunk (TIFF: see save_image)."""
    if fmt == "PNG":
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        info.add_itxt("XML:com.adobe.xmp", xmp.decode("utf-8"))
        return {"pnginfo": info}
    if fmt == "JPEG" and len(xmp) > JPEG_XMP_LIMIT:
        return {}  # one APP1 segment cannot hold it; extended XMP is not worth a second format
    if fmt in ("JPEG", "WEBP"):
        return {"xmp": xmp}
    return {}


def _save_deep(pixels: np.ndarray, path: Path, fmt: str, exif: bytes | None, icc: bytes | None, xmp: bytes | None) -> Path:
    """Write a uint16 array as a 16-bit PNG or TIFF (or a uint8 one as an 8-bit TIFF), atomically."""
    from oldphoto.deepio import DEEP_FORMATS, write_deep

    if fmt not in DEEP_FORMATS or (pixels.dtype == np.uint8 and fmt != "TIFF"):
        raise UsageError(f"{path}: {fmt} holds 8 bits per channel; write 16-bit photos as PNG or TIFF")
    try:
        with atomic_path(path) as tmp:
            write_deep(pixels, Path(tmp), fmt, exif=exif, icc_profile=icc, xmp=xmp)
    except OSError as exc:
        raise ImageError(f"{path}: cannot write output ({one_line(exc) if not exc.strerror else exc.strerror})") from None
    return path
