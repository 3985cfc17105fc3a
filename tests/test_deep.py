"""16-bit photos end to end: every bit read (files from libpng and libtiff), restored in 16 bits, written back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms
from typer.testing import CliRunner

from oldphoto.cli import app
from oldphoto.deepio import orient, png16_bytes, tiff16_bytes, to_8bit
from oldphoto.imageio import read_image, save_image
from oldphoto.inputs import load_photo

DEEP = Path(__file__).resolve().parent / "data" / "deep"


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "400"})
    return result.exit_code, result.output


def _scan(height: int = 48, width: int = 64) -> np.ndarray:
    """A 16-bit RGB 'scan': a smooth sky gradient over a noisy lower half."""
    y, x = np.mgrid[0:height, 0:width]
    sky = np.stack([20000 + x * 300 + y * 41, 24000 + x * 250 + y * 37, 30000 + x * 200 + y * 29], axis=2)
    ground = np.random.default_rng(26).integers(3000, 60000, (height, width, 3))
    return np.where((y < height // 2)[..., None], sky, ground).astype(np.uint16)


def _exif() -> bytes:
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Epson", "Perfection V850"
    exif[0x8769] = {0x9003: "1950:06:01 10:00:00"}
    return exif.tobytes()


ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.mark.parametrize("name", ["rgb16_libpng.png", "rgb16_lzw.tif", "rgb16_raw.tif"])
def test_every_bit_of_16_bit_colour_files_from_other_writers(name: str) -> None:
    """Files written by libpng (adaptive filters) and libtiff (LZW, uncompressed) read to the exact samples."""
    file = read_image(DEEP / name)
    assert file.deep is not None and file.deep.dtype == np.uint16
    assert np.array_equal(file.deep, np.load(DEEP / "rgb16.npy"))
    photo = load_photo(DEEP / name)
    assert photo.bits == 16 and np.array_equal(np.asarray(photo.image), to_8bit(photo.deep))


def test_16_bit_transparency_is_composited_onto_white_in_16_bits() -> None:
    rgba = np.load(DEEP / "rgba16.npy")
    photo = load_photo(DEEP / "rgba16_libpng.png")
    assert photo.deep.shape == (16, 24, 3) and any("transparency" in w for w in photo.warnings)
    assert photo.deep[0, 0].tolist() == [65535] * 3  # alpha 0: white
    assert np.array_equal(photo.deep[1:], rgba[1:, :, :3])  # opaque: as stored


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
@pytest.mark.parametrize("grey", [False, True])
def test_16_bit_files_we_write_read_back_exactly_with_their_metadata(tmp_path: Path, fmt: str, grey: bool) -> None:
    pixels = _scan()[..., 0] if grey else _scan()
    path = tmp_path / f"x.{fmt.lower()}"
    save_image(pixels, path, exif=_exif(), icc_profile=ICC, xmp=b"<x:xmpmeta xmlns:x='adobe:ns:meta/'/>")
    file = read_image(path)
    deep = file.deep if file.deep is not None else np.asarray(file.image)
    assert deep.dtype == np.uint16 and np.array_equal(deep, pixels)
    with Image.open(path) as image:
        assert image.info.get("icc_profile") == ICC
        exif = image.getexif()
        assert exif[0x010F] == "Epson" and exif.get_ifd(0x8769)[0x9003] == "1950:06:01 10:00:00"
    assert file.xmp == b"<x:xmpmeta xmlns:x='adobe:ns:meta/'/>"


def test_orientation_turns_16_bit_samples_as_pillow_turns_images() -> None:
    a = np.arange(6 * 4 * 3, dtype=np.uint8).reshape(4, 6, 3)
    from PIL import ImageOps

    for orientation in range(1, 9):
        image = Image.fromarray(a)
        image.getexif()[0x0112] = orientation
        assert np.array_equal(orient(a, orientation), np.asarray(ImageOps.exif_transpose(image))), orientation


def test_a_16_bit_tiff_scan_restores_to_a_16_bit_tiff_with_its_exif_and_icc(tiny_weights: Path, tmp_path: Path) -> None:
    """The issue's 'done when': more than 256 levels in a smooth region, the same EXIF and ICC."""
    src = tmp_path / "scan.tif"
    src.write_bytes(tiff16_bytes(_scan(), exif=_exif(), icc_profile=ICC))
    out = tmp_path / "restored.tif"
    code, output = _run("restore", str(src), str(out), "--weights", str(tiny_weights), "--device", "cpu",
                        "--comparison", str(tmp_path / "pair.png"))
    assert code == 0, output
    restored = read_image(out)
    assert restored.deep is not None and restored.deep.shape == (48, 64, 3)
    assert len(np.unique(restored.deep[4:20, 4:60])) > 256
    assert read_image(src).exif == restored.exif and restored.icc_profile == ICC
    pair = read_image(tmp_path / "pair.png")
    assert pair.deep is not None and np.array_equal(pair.deep[-48:, :64], _scan()) and np.array_equal(pair.deep[-48:, 64:], restored.deep)
    code, output = _run("restore", str(src), str(tmp_path / "eight.png"), "--weights", str(tiny_weights), "--device", "cpu",
                        "--bit-depth", "8")
    assert code == 0, output
    eight = read_image(tmp_path / "eight.png")
    assert eight.deep is None and eight.image.mode == "RGB"
    # --bit-depth 8 restores the photo's 8-bit rendering, exactly as that 8-bit photo restores.
    from oldphoto.api import Restorer

    rendering = Restorer(tiny_weights, device="cpu").restore(Image.fromarray(to_8bit(_scan())))
    assert np.array_equal(np.asarray(eight.image), np.asarray(rendering))


def test_16_bit_grey_stays_16_bit_grey_and_8_bit_stays_8_bit(tiny_weights: Path, tmp_path: Path) -> None:
    grey = tmp_path / "grey.png"
    Image.fromarray(_scan()[..., 1]).save(grey)  # Pillow's own "I;16" PNG
    eight = tmp_path / "eight.png"
    Image.fromarray(to_8bit(_scan())).save(eight)
    for src in (grey, eight):
        code, output = _run("restore", str(src), str(tmp_path / "out" / src.name), "--weights", str(tiny_weights),
                            "--device", "cpu")
        assert code == 0, output
    with Image.open(tmp_path / "out" / "grey.png") as g, Image.open(tmp_path / "out" / "eight.png") as e:
        assert g.mode == "I;16" and e.mode == "RGB"


def test_asking_16_bits_of_jpeg_or_webp_is_a_usage_error(tiny_weights: Path, tmp_path: Path) -> None:
    src = tmp_path / "scan.png"
    src.write_bytes(png16_bytes(_scan()))
    for out in ("x.jpg", "x.webp"):
        code, output = _run("restore", str(src), str(tmp_path / out), "--weights", str(tiny_weights), "--bit-depth", "16")
        assert code == 2 and len(output.strip().splitlines()) == 1 and "holds 8 bits" in output, output
        assert not (tmp_path / out).exists()
    code, output = _run("restore", str(src), str(tmp_path / "auto.jpg"), "--weights", str(tiny_weights), "--device", "cpu")
    assert code == 0, output  # auto: JPEG stays 8-bit


def test_tiled_16_bit_equals_untiled(tiny_weights: Path) -> None:
    """Tiling follows the depth: the same 16-bit samples to float rounding (1e-4 of the range, a few levels)."""
    from oldphoto.api import Restorer

    photo = _scan(96, 80)
    whole = Restorer(tiny_weights, device="cpu").restore_detailed(photo, mode="quality")
    tiled = Restorer(tiny_weights, device="cpu", tile=32).restore_detailed(photo, mode="quality")
    assert whole.deep is not None and tiled.deep is not None
    assert np.abs(whole.deep.astype(int) - tiled.deep.astype(int)).max() <= 8


def test_the_levels_step_maps_16_bit_samples_as_it_maps_8_bit_ones() -> None:
    """The fading step (lite's ``pipeline.levels``) measures and maps a 16-bit photo on the same 0-255 scale."""
    from oldphoto.tone import fade_levels

    rng = np.random.default_rng(4)
    faded = (rng.random((60, 80, 3)) * 90 + 110).astype(np.uint8)  # lifted blacks, short span: faded
    deep = faded.astype(np.uint16) * 257
    levels8, levels16 = fade_levels(faded), fade_levels(deep)
    assert levels8 is not None and levels16 is not None
    assert np.allclose(levels8.scale, levels16.scale, atol=1e-3) and np.allclose(levels8.offset, levels16.offset, atol=0.2)
    out8, out16 = levels8.apply(faded), levels8.apply(deep)
    assert out16.dtype == np.uint16 and np.abs(out16 / 257.0 - out8).max() <= 0.51  # the 8-bit map's own rounding
