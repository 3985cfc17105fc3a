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

#: Largest photo accepted by default (about 1.2 times an 8×10 inch print at 1200 dpi × 2).
DEFAULT_MAX_PIXELS = 250_000_000
#: Formats we write; anything else read (GIF, BMP, ...) is written as PNG by default.
WRITABLE = {"PNG": ".png", "JPEG": ".jpg", "TIFF": ".tif", "WEBP": ".webp", "BMP": ".bmp"}
_KEEPS_EXIF = {"JPEG", "PNG", "TIFF", "WEBP"}
_KEEPS_ICC = {"JPEG", "PNG", "TIFF", "WEBP"}
_GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


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


def _open(path: Path, max_pixels: int | None) -> Image.Image:
    """Open lazily (header only), refusing decompression bombs before any pixel is decoded."""
    if not path.is_file():
        raise ImageError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: empty file")
    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # our own limit below replaces Pillow's
    try:
        image = Image.open(path)
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file (or a format Pillow cannot read)") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{path}: refused as a possible decompression bomb ({exc}); raise --max-pixels to allow it") from None
    except OSError as exc:
        raise ImageError(f"{path}: cannot read image ({exc})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    w, h = image.size
    if max_pixels is not None and w * h > max_pixels:
        image.close()
        raise ImageError(
            f"{path}: {w}×{h} = {w * h / 1e6:.0f} megapixels exceeds the limit of {max_pixels / 1e6:.0f} "
            "(a possible decompression bomb); raise --max-pixels to allow it"
        )
    return image


def _to_8bit(image: Image.Image) -> Image.Image:
    """Scale 16-bit and 32-bit grey to 8 bits by value (not by clipping)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or a.max() > 255 else 255.0
        return Image.fromarray(np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
    if image.mode == "F":
        a = np.asarray(image, dtype=np.float64)
        top = 1.0 if a.max() <= 1.0 else 255.0
        return Image.fromarray(np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
    return image


def _flatten(image: Image.Image, warnings: list[str], path: Path | None) -> Image.Image:
    """Any Pillow mode to "RGB" or "L"; transparency is composited onto white."""
    if image.mode == "P":
        image = image.convert("RGBA") if "transparency" in image.info else image.convert("RGB")
    if image.mode == "PA":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "RGBa", "La"):
        alpha = np.asarray(image.getchannel("A"))
        base = "RGB" if image.mode.startswith("RGB") else "L"
        if alpha.min() < 255:
            warnings.append(f"{path or 'image'}: has transparency; composited onto white")
            white = Image.new(base, image.size, 255 if base == "L" else (255, 255, 255))
            white.paste(image.convert(base), mask=image.getchannel("A"))
            return white
        return image.convert(base)
    if image.mode in _GREY_MODES:
        return _to_8bit(image).convert("L")
    if image.mode == "CMYK":
        return image.convert("RGB")
    if image.mode in ("RGB;16", "BGR;16") or image.mode != "RGB":
        return image.convert("RGB")
    return image


def load_image(path: Path | str, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Read a photo file: first page/frame, EXIF orientation applied, 8-bit "RGB" or "L"."""
    path = Path(path)
    warnings: list[str] = []
    with _open(path, max_pixels) as image:
        fmt = image.format
        frames = getattr(image, "n_frames", 1)
        if frames > 1:
            kind = "pages" if fmt == "TIFF" else "frames"
            warnings.append(f"{path}: has {frames} {kind}; restoring the first only")
        icc = image.info.get("icc_profile")
        try:
            image.seek(0)
            image.load()
            exif = image.getexif()
            oriented = ImageOps.exif_transpose(image) or image
            photo = _flatten(oriented, warnings, path)
        except Image.DecompressionBombError as exc:
            raise ImageError(f"{path}: refused as a possible decompression bomb ({exc}); raise --max-pixels to allow it") from None
        except (OSError, ValueError, SyntaxError) as exc:
            raise ImageError(f"{path}: cannot decode image ({exc})") from None
    exif_bytes = None
    if len(exif):
        if 0x0112 in exif:
            exif[0x0112] = 1
        exif_bytes = exif.tobytes()
    if photo.mode == "L" and icc is not None and _icc_colour_space(icc) == "RGB":
        icc = None
    if photo.mode == "RGB" and icc is not None and _icc_colour_space(icc) != "RGB":
        icc = None
    return LoadedImage(image=photo, path=path, format=fmt, exif=exif_bytes, icc_profile=icc, warnings=warnings)


def _icc_colour_space(icc: bytes) -> str:
    """The data colour space an ICC profile declares (bytes 16–20 of its header)."""
    return icc[16:20].decode("ascii", errors="replace").strip() if len(icc) >= 20 else ""


def load_mask(path: Path | str, size: tuple[int, int], *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Read a damage mask (white = damaged, any mode and size) as "L" 0/255 at ``size``.

    Transparent pixels count as undamaged; the mask is resized with nearest neighbour so a
    drawn line stays a line, and thresholded at half so anti-aliased strokes stay binary.
    """
    path = Path(path)
    with _open(path, max_pixels) as image:
        try:
            image.seek(0)
            image.load()
            if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
                rgba = image.convert("RGBA")
                black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
                grey = Image.alpha_composite(black, rgba).convert("L")
            else:
                grey = _to_8bit(image).convert("L")
        except (OSError, ValueError, SyntaxError) as exc:
            raise ImageError(f"{path}: cannot decode mask ({exc})") from None
    if grey.size != size:
        grey = grey.resize(size, Image.Resampling.NEAREST)
    return grey.point(lambda v: 255 if v >= 128 else 0)


def output_format(path: Path | str, requested: str | None = None, source_format: str | None = None) -> str:
    """The Pillow format to write: ``requested``, else the output's extension, else PNG."""
    if requested:
        fmt = requested.upper().replace("JPG", "JPEG").replace("TIF", "TIFF").replace("TIFFF", "TIFF")
        if fmt not in WRITABLE:
            raise UsageError(f"cannot write format {requested!r} (choose {', '.join(f.lower() for f in WRITABLE)})")
        return fmt
    ext = Path(path).suffix.lower()
    fmt = Image.registered_extensions().get(ext)
    if fmt in WRITABLE:
        return fmt
    if source_format in WRITABLE and not ext:
        return source_format
    raise UsageError(f"{path}: cannot write '{ext or 'no extension'}' files (use .png, .jpg, .tif, .webp or .bmp)")


def save_image(
    image: Image.Image,
    path: Path | str,
    *,
    format: str | None = None,
    exif: bytes | None = None,
    icc_profile: bytes | None = None,
) -> Path:
    """Write ``image`` atomically, keeping EXIF and the ICC profile where the format allows."""
    path = Path(path)
    fmt = output_format(path, format)
    options: dict[str, object] = {}
    if exif and fmt in _KEEPS_EXIF:
        options["exif"] = exif
    if icc_profile and fmt in _KEEPS_ICC:
        options["icc_profile"] = icc_profile
    if fmt == "JPEG":
        options.update(quality=95, subsampling=0)
    if fmt == "WEBP":
        options.update(quality=95)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    try:
        with atomic_path(path) as tmp:
            tmp.write_bytes(buffer.getvalue())
    except OSError as exc:
        raise ImageError(f"{path}: cannot write output ({exc.strerror or exc})") from None
    return path
