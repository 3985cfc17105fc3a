"""Reading and writing real-world scans: formats, bit depths, orientation, metadata, bombs.

Everything that arrives is turned into an 8-bit "RGB" photo, or "L" for grey ones so that a
grey print comes back grey, with EXIF orientation applied. EXIF (orientation reset) and the
ICC profile are carried to the output where its format can hold them. Unreadable files raise
:class:`ImageError` with one line naming the file and the problem.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from oldphoto.errors import ImageError, UsageError
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
_GREY_MODES = {"1", "L", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
#: A JPEG APP1 segment holds at most 65,533 bytes of EXIF after its "Exif\0\0" header.
_JPEG_EXIF_LIMIT = 65_527
#: Descriptive EXIF tags worth carrying out of a TIFF; a TIFF's own tags (strip offsets,
#: bits per sample, compression...) describe that file's layout and would be lies elsewhere.
_TIFF_DESCRIPTIVE_TAGS = {270, 271, 272, 274, 282, 283, 296, 305, 306, 315, 33432, 0x8769, 0x8825}
_ORIENTATION = 0x0112


@dataclass
class LoadedImage:
    """A decoded photo ready for restoration, with what the output should carry over."""

    image: Image.Image
    path: Path | None = None
    format: str | None = None
    exif: bytes | None = None
    icc_profile: bytes | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def is_grey(self) -> bool:
        """True when the photo is (and its output should stay) single-channel grey."""
        return self.image.mode == "L"


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
        raise ImageError(f"{path}: cannot read image ({_one_line(exc)})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    w, h = image.size
    if max_pixels and w * h > max_pixels:
        image.close()
        raise ImageError(_bomb_message(path, w, h, max_pixels))
    return image


def _one_line(exc: BaseException) -> str:
    """An exception's message squeezed onto one line (some decoders put newlines in theirs)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _to_8bit(image: Image.Image) -> Image.Image:
    """Scale 16-bit and 32-bit grey to 8 bits by value (round(v / 257)), never by clipping."""
    if image.mode.startswith("I;16") or image.mode == "I":
        a = np.asarray(image, dtype=np.float64)
        # Mode "I" has no declared depth: values above 255 can only be 16-bit data.
        top = 65535.0 if image.mode.startswith("I;16") or a.max() > 255 else 255.0
        return Image.fromarray(np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
    if image.mode == "F":
        a = np.asarray(image, dtype=np.float64)
        top = 1.0 if a.max() <= 1.0 else 255.0
        return Image.fromarray(np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
    return image


def _cmyk_to_rgb(image: Image.Image, icc: bytes | None) -> Image.Image:
    """CMYK to sRGB through the file's own CMYK profile when it has one, else Pillow's formula."""
    if icc is not None and _icc_colour_space(icc) == "CMYK":
        try:
            from PIL import ImageCms

            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            converted = ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
            if converted is not None:
                return converted
        except (ImportError, OSError, ValueError, ImageCms.PyCMSError):
            pass
    return image.convert("RGB")


def _flatten(image: Image.Image, warnings: list[str], path: Path | None, icc: bytes | None) -> Image.Image:
    """Any Pillow mode to "RGB" or "L"; transparency is composited onto white."""
    if image.mode == "P":
        image = image.convert("RGBA") if "transparency" in image.info else image.convert("RGB")
    elif image.mode == "PA":
        image = image.convert("RGBA")
    elif image.mode in ("RGBa", "La"):
        image = image.convert(image.mode[0:-1] + "A")
    elif image.mode == "L" and "transparency" in image.info:
        image = image.convert("LA")
    elif image.mode == "RGB" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA"):
        base = image.mode[:-1]
        alpha = image.getchannel("A")
        if alpha.getextrema()[0] < 255:
            warnings.append(f"{path or 'image'}: has transparency; composited onto white")
            white = Image.new(base, image.size, 255 if base == "L" else (255, 255, 255))
            white.paste(image.convert(base), mask=alpha)
            return white
        return image.convert(base)
    if image.mode in _GREY_MODES:
        return _to_8bit(image).convert("L")
    if image.mode == "CMYK":
        return _cmyk_to_rgb(image, icc)
    if image.mode != "RGB":
        return image.convert("RGB")
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


def load_image(path: Path | str, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Read a photo file: first page/frame, EXIF orientation applied, 8-bit "RGB" or "L".

    ``max_pixels`` (``None`` or 0: no limit) is checked from the header before decoding.
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
            photo = _flatten(oriented, warnings, path, icc)
        except Image.DecompressionBombError:
            raise ImageError(f"{path}: refused as a possible decompression bomb; raise --max-pixels to allow it") from None
        except (OSError, ValueError, SyntaxError, EOFError) as exc:
            raise ImageError(f"{path}: cannot decode image ({_one_line(exc)})") from None
    if icc is not None and _icc_colour_space(icc) != ("GRAY" if photo.mode == "L" else "RGB"):
        icc = None  # a CMYK profile after conversion, or an RGB one on grey pixels, would mislead viewers
    return LoadedImage(
        image=photo, path=path, format=fmt, exif=_portable_exif(exif, fmt), icc_profile=icc, warnings=warnings
    )


def _icc_colour_space(icc: bytes) -> str:
    """The data colour space an ICC profile declares (bytes 16–20 of its header)."""
    return icc[16:20].decode("ascii", errors="replace").strip() if len(icc) >= 20 else ""


def load_mask(path: Path | str, size: tuple[int, int], *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Read a damage mask (white = damaged, any mode and size) as "L" 0/255 at ``size``.

    Transparent pixels count as undamaged, so strokes painted on a transparent layer work;
    the mask is resized with nearest neighbour so a drawn line stays a line, and
    thresholded at half so anti-aliased strokes stay binary.
    """
    path = Path(path)
    with _open(path, max_pixels) as image:
        try:
            image.seek(0)
            image.load()
            image = ImageOps.exif_transpose(image)
            if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
                rgba = image.convert("RGBA")
                black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
                grey = Image.alpha_composite(black, rgba).convert("L")
            else:
                grey = _to_8bit(image).convert("L")
        except (OSError, ValueError, SyntaxError, EOFError) as exc:
            raise ImageError(f"{path}: cannot decode mask ({_one_line(exc)})") from None
    if grey.size != size:
        grey = grey.resize(size, Image.Resampling.NEAREST)
    return grey.point(lambda v: 255 if v >= 128 else 0)


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
        raise ImageError(f"{path}: cannot write output ({_one_line(exc) if not exc.strerror else exc.strerror})") from None
    return path
