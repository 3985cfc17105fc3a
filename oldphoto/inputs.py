"""What a photo and a damage mask are, whatever form they arrive in: the one normalisation.

Every entry point — ``oldphoto restore`` on a file or a folder, :class:`oldphoto.Restorer`,
and whatever comes later (a cluster engine, a web app, training) — turns its inputs into
pixels with :func:`load_photo` and :func:`load_mask`, so the same picture gives the same
restoration whichever way it was handed over. Each accepts a path (decoded by
:mod:`oldphoto.imageio`), a PIL image or a numpy array, of any mode and size.

**Photos** become 8-bit "RGB", or "L" when grey (modes in :data:`GREY_MODES`), so a grey
print comes back grey. Transparency is composited onto white (a warning says so), 16-bit and
float grey is scaled to 8 bits by value (never clipped), CMYK goes through its own ICC
profile when it carries one. Arrays: uint8 as is, uint16 divided by 257, float in [0, 1]
times 255, bool as black and white; H×W or H×W×1 is grey, H×W×3 RGB, H×W×4 RGBA.

**Masks** (white = damaged) follow one rule, :func:`mask_brightness` then a threshold:

1. brightness 0–255: transparency composited onto black (so strokes painted on a transparent
   layer are the damage and the rest is not), 16-bit and float values scaled as for photos,
   colour to luma (ITU-R 601, PIL's "L");
2. damaged where that brightness is at least half: ≥ 128 of 255. For arrays that is
   ``True`` (bool), ≥ 128 (uint8), ≥ 32768 (uint16) or ≥ 0.5 (float);
3. resized to the photo's size by nearest neighbour (:func:`fit_mask`), so a drawn line stays
   a line and the mask stays binary.

The result is an "L" image holding only 0 and 255.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image

from oldphoto.errors import ImageError
from oldphoto.imageio import DEFAULT_MAX_PIXELS, read_image

#: What a photo or a mask may be given as.
ImageInput = Union[str, Path, Image.Image, np.ndarray]
#: Pillow modes that hold a single grey channel (their alpha variants are handled with transparency).
GREY_MODES = frozenset({"1", "L", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
#: Brightness → damage: 0 below half of 255, 255 from half up.
_HALF = [0] * 128 + [255] * 128


@dataclass
class Photo:
    """A photo ready for restoration ("RGB" or "L"), with what its output should carry over."""

    image: Image.Image
    path: Path | None = None
    format: str | None = None
    exif: bytes | None = None
    icc_profile: bytes | None = None
    warnings: list[str] = field(default_factory=list)
    #: A 16-bit photo's samples (uint16, H×W grey or H×W×3 RGB, like ``image``); ``image`` is then
    #: their 8-bit rendering (``round(v / 257)``). None for 8-bit photos.
    deep: np.ndarray | None = None
    #: The file's XMP packet, carried to the output beside the provenance.
    xmp: bytes | None = None

    @property
    def is_grey(self) -> bool:
        """True when the photo is (and its output should stay) single-channel grey."""
        return self.image.mode == "L"

    @property
    def bits(self) -> int:
        """Bits per sample the photo came with: 16 for 16-bit PNG, TIFF or arrays, else 8."""
        return 16 if self.deep is not None else 8

    def rgb_pixels(self, bits: int) -> np.ndarray:
        """H×W×3 samples to restore: uint16 (an 8-bit photo scaled by 257) when ``bits`` is 16, else uint8."""
        if bits == 16:
            deep = self.deep if self.deep is not None else np.asarray(self.image).astype(np.uint16) * 257
            return np.repeat(deep[..., None], 3, axis=2) if deep.ndim == 2 else deep
        return np.asarray(self.image.convert("RGB"))


def load_photo(source: ImageInput, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Photo:
    """A path, PIL image or array as an 8-bit "RGB" or "L" :class:`Photo` (see the module's rules).

    ``max_pixels`` (``None`` or 0: no limit) guards files against decompression bombs.
    """
    if isinstance(source, (str, Path)):
        file = read_image(source, max_pixels=max_pixels)
        warnings = list(file.warnings)
        deep = _deep_pixels(file.deep if file.deep is not None else file.image, warnings, str(file.path))
        image = _from_deep(deep) if deep is not None else _flatten(file.image, warnings, str(file.path), file.icc_profile)
        icc = file.icc_profile
        if icc is not None and _icc_colour_space(icc) != ("GRAY" if image.mode == "L" else "RGB"):
            icc = None  # a CMYK profile after conversion, or an RGB one on grey pixels, would mislead viewers
        return Photo(image=image, path=file.path, format=file.format, exif=file.exif, icc_profile=icc, warnings=warnings,
                     deep=deep, xmp=file.xmp)
    warnings = []
    deep = _deep_pixels(source, warnings, "image") if isinstance(source, (np.ndarray, Image.Image)) else None
    if deep is not None:
        return Photo(image=_from_deep(deep), warnings=warnings, deep=deep)
    image = _in_memory(source, "image")
    return Photo(image=_flatten(image, warnings, "image", image.info.get("icc_profile")), warnings=warnings)


def _deep_pixels(source: np.ndarray | Image.Image, warnings: list[str], name: str) -> np.ndarray | None:
    """A 16-bit source's samples as uint16 H×W or H×W×3 (transparency composited onto white), else None.

    16-bit sources: uint16 arrays, Pillow's 16-bit grey modes (and mode "I" holding values
    above 255), and the 16-bit colour samples :func:`~oldphoto.imageio.read_image` keeps.
    """
    if isinstance(source, Image.Image):
        if not (source.mode.startswith("I;16") or (source.mode == "I" and source.getextrema()[1] > 255)):
            return None
        source = np.clip(np.asarray(source), 0, 65535).astype(np.uint16)
    if source.dtype != np.uint16 or source.ndim not in (2, 3) or (source.ndim == 3 and source.shape[2] not in (1, 3, 4)):
        return None
    deep = source[..., 0] if source.ndim == 3 and source.shape[2] == 1 else source
    if deep.ndim == 3 and deep.shape[2] == 4:
        alpha = deep[..., 3:].astype(np.float64) / 65535.0
        if alpha.min() < 1.0:
            warnings.append(f"{name}: has transparency; composited onto white")
            deep = (deep[..., :3] * alpha + 65535.0 * (1.0 - alpha) + 0.5).astype(np.uint16)
        else:
            deep = deep[..., :3]
    return np.ascontiguousarray(deep)


def _from_deep(deep: np.ndarray) -> Image.Image:
    """The 8-bit "L" or "RGB" rendering of 16-bit samples."""
    from oldphoto.deepio import to_8bit

    return Image.fromarray(to_8bit(deep))  # H×W: "L", H×W×3: "RGB"


def load_mask(source: ImageInput, size: tuple[int, int], *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """A path, PIL image or array as a binary "L" damage mask (0/255) of ``size`` (width, height)."""
    if isinstance(source, (str, Path)):
        image = read_image(source, max_pixels=max_pixels, what="mask").image
    else:
        image = _in_memory(source, "mask")
    return fit_mask(mask_brightness(image).point(_HALF), size)


def mask_brightness(image: Image.Image) -> Image.Image:
    """Step 1 of the mask rule: any mode to "L" brightness, transparency composited onto black."""
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba).convert("L")
    if image.mode in GREY_MODES:
        return _to_8bit(image).convert("L")
    return image.convert("RGB").convert("L")


def fit_mask(mask: Image.Image, size: tuple[int, int]) -> Image.Image:
    """A mask at ``size`` (width, height), resized by nearest neighbour: the one place masks are resized."""
    return mask if mask.size == size else mask.resize(size, Image.Resampling.NEAREST)


def _in_memory(source: object, what: str) -> Image.Image:
    """A PIL image as given, or an array as an 8-bit PIL image; anything else is an ImageError."""
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, np.ndarray):
        return _from_array(source, what)
    raise ImageError(f"{what}: expected a path, a PIL image or a numpy array, got {type(source).__name__}")


def _from_array(a: np.ndarray, what: str) -> Image.Image:
    """An H×W[×1|3|4] array (bool, uint8, uint16 or float in [0, 1]) as an "L", "RGB" or "RGBA" image."""
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif a.dtype == np.uint16:
        a = (a.astype(np.float64) / 257.0).round().astype(np.uint8)
    elif a.dtype.kind == "f":
        a = (np.clip(a, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    elif a.dtype != np.uint8:
        raise ImageError(f"{what}: unsupported array dtype {a.dtype} (use uint8, uint16, bool or float in [0, 1])")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim == 2:
        return Image.fromarray(np.ascontiguousarray(a), mode="L")
    if a.ndim == 3 and a.shape[2] in (3, 4):
        return Image.fromarray(np.ascontiguousarray(a), mode="RGB" if a.shape[2] == 3 else "RGBA")
    raise ImageError(f"{what}: array of shape {a.shape} is not an H×W, H×W×3 or H×W×4 image")


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


def _flatten(image: Image.Image, warnings: list[str], name: str, icc: bytes | None) -> Image.Image:
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
            warnings.append(f"{name}: has transparency; composited onto white")
            white = Image.new(base, image.size, 255 if base == "L" else (255, 255, 255))
            white.paste(image.convert(base), mask=alpha)
            return white
        return image.convert(base)
    if image.mode in GREY_MODES:
        return _to_8bit(image).convert("L")
    if image.mode == "CMYK":
        return _cmyk_to_rgb(image, icc)
    if image.mode != "RGB":
        return image.convert("RGB")
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


def _icc_colour_space(icc: bytes) -> str:
    """The data colour space an ICC profile declares (bytes 16–20 of its header)."""
    return icc[16:20].decode("ascii", errors="replace").strip() if len(icc) >= 20 else ""
