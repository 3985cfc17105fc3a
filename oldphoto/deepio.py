"""16-bit photos: reading every bit of a 16-bit PNG or TIFF, and writing 16-bit PNG and TIFF files.

Pillow keeps 16-bit grey ("I;16") whole but has no 16-bit colour mode: it reads a 16-bit RGB
file as 8-bit RGB, keeping each sample's high byte. Its decoders still do the real work here:
:func:`read_low_bytes` decodes the file a second time with the byte order of every tile
swapped, which yields each sample's low byte, so the two decodes together are the 16-bit
samples, whatever the compression (PNG filters, TIFF LZW, Deflate, predictors) — Pillow's and
libtiff's code, not ours. Writing a 16-bit RGB file is what Pillow cannot do at all:
:func:`write_png16` assembles the PNG chunks (the format is a few length-prefixed chunks
around one zlib stream) and :func:`write_tiff16` lays out the pixels as Deflate strips behind
an IFD serialised by Pillow's own ``ImageFileDirectory_v2`` (so EXIF sub-IFDs, ICC and XMP
tags are written by the same code that writes them for 8-bit TIFFs).

Arrays are H×W (grey), H×W×3 (RGB) or H×W×4 (RGBA, read only) of ``uint16``.
"""

from __future__ import annotations

import io
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, TiffTags
from PIL.TiffImagePlugin import ImageFileDirectory_v2

#: Formats that hold 16 bits per sample (JPEG, WebP and BMP hold 8).
DEEP_FORMATS = frozenset({"PNG", "TIFF"})
#: EXIF tags that point at sub-IFDs (EXIF, GPS): written as nested IFDs in a TIFF.
_SUB_IFDS = (0x8769, 0x8825)
#: Tags a TIFF writer sets itself; an EXIF block's copies of them would describe another file.
_LAYOUT_TAGS = frozenset({254, 256, 257, 258, 259, 262, 273, 277, 278, 279, 284, 317, 339, 322, 323, 324, 325, 338})
_ROWS_PER_STRIP = 64
_SWAP = {"16B": "16L", "16L": "16B", "16N": "16B" if sys.byteorder == "little" else "16L"}


def is_deep_colour(image: Image.Image) -> bool:
    """True for a lazily opened 16-bit-per-sample colour file that Pillow would cut to 8 bits."""
    if image.mode not in ("RGB", "RGBA") or not image.tile:
        return False
    return all(_rawmode(tile).startswith(("RGB;16", "RGBA;16")) for tile in image.tile)


def _rawmode(tile: object) -> str:
    args = tile.args  # type: ignore[attr-defined]
    return args[0] if isinstance(args, tuple) else str(args)


def _swapped(tile: object) -> object:
    raw = _rawmode(tile)
    suffix = raw[raw.index(";16") + 1 : raw.index(";16") + 4]
    new = raw.replace(suffix, _SWAP.get(suffix, suffix), 1)
    args = tile.args  # type: ignore[attr-defined]
    return tile._replace(args=(new, *args[1:]) if isinstance(args, tuple) else new)  # type: ignore[attr-defined]


def read_low_bytes(path: Path) -> np.ndarray:
    """Each sample's low byte of the 16-bit colour file ``path``'s first page (as stored, not oriented)."""
    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # the caller already checked the size
    try:
        with Image.open(path) as image:
            image.tile = [_swapped(t) for t in image.tile]
            image.load()
            return np.asarray(image)
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def combine(high: Image.Image, low: np.ndarray) -> np.ndarray:
    """The 16-bit samples from the high-byte image Pillow decoded and the low bytes."""
    return (np.asarray(high).astype(np.uint16) << 8) | low.astype(np.uint16)


def orient(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """``pixels`` turned upright for EXIF ``orientation`` (1-8), as :func:`PIL.ImageOps.exif_transpose` turns images."""
    turns = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],
        8: lambda a: np.rot90(a, 1),
    }
    turn = turns.get(orientation)
    return np.ascontiguousarray(turn(pixels)) if turn is not None else pixels


def to_8bit(pixels: np.ndarray) -> np.ndarray:
    """16-bit samples to 8 bits by value: ``round(v / 257)``."""
    return ((pixels.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png16_bytes(pixels: np.ndarray, *, exif: bytes | None = None, icc_profile: bytes | None = None,
                xmp: bytes | None = None) -> bytes:
    """A 16-bit grey or RGB PNG of ``pixels`` with its ICC profile (iCCP), EXIF (eXIf) and XMP (iTXt)."""
    h, w = pixels.shape[:2]
    grey = pixels.ndim == 2
    rows = np.ascontiguousarray(pixels.astype(">u2")).reshape(h, -1).view(np.uint8)
    # Filter "Up" (2) on every row: the difference to the row above, vectorised; smooth scans compress better.
    up = rows.copy()
    up[1:] -= rows[:-1]
    raw = np.concatenate([np.full((h, 1), 2, np.uint8), up], axis=1)
    out = [b"\x89PNG\r\n\x1a\n", _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 0 if grey else 2, 0, 0, 0))]
    if icc_profile:
        out.append(_chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(icc_profile)))
    if exif:
        out.append(_chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\x00\x00") else exif))
    if xmp:
        out.append(_chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + xmp))
    out.append(_chunk(b"IDAT", zlib.compress(raw.tobytes(), 6)))
    out.append(_chunk(b"IEND", b""))
    return b"".join(out)


def tiff16_bytes(pixels: np.ndarray, *, exif: bytes | None = None, icc_profile: bytes | None = None,
                 xmp: bytes | None = None) -> bytes:
    """A 16-bit (or, for uint8 ``pixels``, 8-bit) grey or RGB TIFF (Deflate, horizontal predictor) with EXIF, ICC and XMP tags.

    Pillow's own TIFF writer (libtiff) cannot write an EXIF block's sub-IFDs beside other tags,
    so 8-bit TIFFs that carry them are written here too.
    """
    h, w = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    bits = 8 if pixels.dtype == np.uint8 else 16
    samples = pixels.reshape(h, w, channels).astype("u1" if bits == 8 else "<u2")
    strips = []
    for top in range(0, h, _ROWS_PER_STRIP):
        band = samples[top : top + _ROWS_PER_STRIP]
        diff = band.copy()
        diff[:, 1:] -= band[:, :-1]  # predictor 2: each sample minus its left neighbour (wrapping, as TIFF says)
        strips.append(zlib.compress(diff.tobytes(), 6))
    ifd = ImageFileDirectory_v2(prefix=b"II")
    if exif:
        tags = Image.Exif()
        tags.load(exif)
        for tag, value in tags.items():
            if tag not in _LAYOUT_TAGS and tag not in _SUB_IFDS:
                ifd[tag] = value
        for tag in _SUB_IFDS:
            sub = tags.get_ifd(tag)
            if sub:
                ifd.tagtype[tag] = TiffTags.LONG
                ifd[tag] = dict(sub)
    for tag, value in ((256, w), (257, h), (259, 8), (262, 1 if channels == 1 else 2), (277, channels),
                       (278, _ROWS_PER_STRIP), (284, 1), (317, 2)):
        ifd.tagtype[tag] = TiffTags.LONG if tag in (256, 257, 278) else TiffTags.SHORT
        ifd[tag] = value
    ifd.tagtype[258] = ifd.tagtype[339] = TiffTags.SHORT
    ifd[258] = (bits,) * channels
    ifd[339] = (1,) * channels
    if icc_profile:
        ifd.tagtype[34675] = TiffTags.UNDEFINED
        ifd[34675] = icc_profile
    if xmp:
        ifd.tagtype[700] = TiffTags.BYTE
        ifd[700] = xmp
    offsets, at = [], 0
    for strip in strips:
        offsets.append(at)
        at += len(strip)
    ifd.tagtype[273] = ifd.tagtype[279] = TiffTags.LONG
    ifd[273] = tuple(offsets)  # Pillow adds the end of the IFD to these when it serialises it
    ifd[279] = tuple(len(s) for s in strips)
    out = io.BytesIO()
    ifd.save(out)  # the header, then the IFD and its data
    out.write(b"".join(strips))
    return out.getvalue()


def write_deep(pixels: np.ndarray, path: Path, fmt: str, *, exif: bytes | None = None,
               icc_profile: bytes | None = None, xmp: bytes | None = None) -> None:
    """Write ``pixels`` (uint16, grey or RGB) to ``path`` as a 16-bit ``fmt`` (PNG or TIFF)."""
    build = png16_bytes if fmt == "PNG" else tiff16_bytes
    path.write_bytes(build(pixels, exif=exif, icc_profile=icc_profile, xmp=xmp))


def restored_image(pixels: np.ndarray, grey: bool) -> tuple[Image.Image, np.ndarray | None]:
    """The restored H×W×3 samples as the result's 8-bit image and, for uint16, its 16-bit samples.

    A grey photo comes back grey: Pillow's luma for 8 bits, the same ITU-R 601 weights for 16.
    """
    if pixels.dtype == np.uint8:
        image = Image.fromarray(pixels)
        return (image.convert("L") if grey else image), None
    if grey:
        luma = pixels[..., 0] * 0.299 + pixels[..., 1] * 0.587 + pixels[..., 2] * 0.114
        pixels = np.clip(np.rint(luma), 0, 65535).astype(np.uint16)
    return Image.fromarray(to_8bit(pixels)), pixels
