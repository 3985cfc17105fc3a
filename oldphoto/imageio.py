"""Image files in and out: formats, pages, orientation, metadata, decompression bombs, atomic writes.

:func:`read_image` decodes a file's first page upright, in the file's own mode, with the EXIF
(orientation reset) and ICC profile to carry to the output; :mod:`oldphoto.inputs` then makes
a photo or a mask of it. :func:`save_image` writes where the format can hold them. Unreadable
or unwritable files raise :class:`ImageError` with one line naming the file and the problem.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

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


@dataclass
class ImageFile:
    """A decoded file before it is made a photo or a mask: first page, upright, in the file's mode."""

    image: Image.Image
    path: Path
    format: str | None = None
    exif: bytes | None = None
    icc_profile: bytes | None = None
    warnings: list[str] = field(default_factory=list)


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
            image.load()
            exif = image.getexif()
            oriented = ImageOps.exif_transpose(image)
        except Image.DecompressionBombError:
            raise ImageError(f"{path}: refused as a possible decompression bomb; raise --max-pixels to allow it") from None
        except (OSError, ValueError, SyntaxError, EOFError) as exc:
            raise ImageError(f"{path}: cannot decode {what} ({one_line(exc)})") from None
    return ImageFile(
        image=oriented, path=path, format=fmt, exif=_portable_exif(exif, fmt), icc_profile=icc, warnings=warnings
    )


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
    image: Image.Image,
    path: Path | str,
    *,
    format: str | None = None,
    exif: bytes | None = None,
    icc_profile: bytes | None = None,
) -> Path:
    """Write ``image`` atomically, keeping EXIF and the ICC profile where the format allows.

    The file appears complete or not at all (temp file in the same folder, then rename).
    JPEG and WebP are written at quality 95, JPEG without chroma subsampling. WebP has no
    grey mode, so a grey photo saved as WebP reads back as RGB.
    """
    path = Path(path)
    fmt = output_format(path, format)
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    options: dict[str, object] = {}
    if exif and fmt in _KEEPS_EXIF and not (fmt == "JPEG" and len(exif) > _JPEG_EXIF_LIMIT):
        options["exif"] = exif
    if icc_profile and fmt in _KEEPS_ICC:
        options["icc_profile"] = icc_profile
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
