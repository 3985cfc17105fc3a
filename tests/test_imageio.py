"""Real-world image files: formats, bit depths, orientation, metadata, masks, bombs."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from oldphoto.errors import ImageError
from oldphoto.imageio import load_image, load_mask, output_format, save_image


def _gradient(w: int, h: int) -> np.ndarray:
    x = np.linspace(0, 255, w, dtype=np.float64)[None, :, None]
    y = np.linspace(0, 255, h, dtype=np.float64)[:, None, None]
    return np.concatenate([np.broadcast_to(x, (h, w, 1)), np.broadcast_to(y, (h, w, 1)), np.full((h, w, 1), 90.0)], axis=2).astype(np.uint8)


def test_exif_orientation_is_applied_and_reset(tmp_path: Path) -> None:
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    exif[0x010F] = "ScanCo"
    Image.fromarray(_gradient(40, 20)).save(path, exif=exif)
    loaded = load_image(path)
    assert loaded.image.size == (20, 40)
    out = tmp_path / "out.jpg"
    save_image(loaded.image, out, exif=loaded.exif)
    written = Image.open(out).getexif()
    assert written[0x0112] == 1 and written[0x010F] == "ScanCo"


def test_16_bit_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    path = tmp_path / "deep.png"
    a = np.array([[0, 257 * 128, 65535, 257 * 3]], dtype=np.uint16)
    Image.fromarray(a).save(path)
    loaded = load_image(path)
    assert loaded.image.mode == "L"
    assert np.asarray(loaded.image).tolist() == [[0, 128, 255, 3]]


def test_grey_jpeg_stays_grey(tmp_path: Path) -> None:
    path = tmp_path / "grey.jpg"
    Image.fromarray(_gradient(30, 20)[..., 0]).save(path)
    assert load_image(path).image.mode == "L"


def test_cmyk_jpeg_becomes_rgb(tmp_path: Path) -> None:
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 12), (0, 255, 255, 0)).save(path)
    loaded = load_image(path)
    assert loaded.image.mode == "RGB" and loaded.image.size == (16, 12)
    r, g, b = np.asarray(loaded.image)[6, 8]
    assert r > 200 and g < 60 and b < 60


def test_opaque_rgba_no_warning_transparent_composited_on_white(tmp_path: Path) -> None:
    opaque = tmp_path / "opaque.png"
    Image.new("RGBA", (8, 8), (10, 20, 30, 255)).save(opaque)
    loaded = load_image(opaque)
    assert loaded.warnings == [] and loaded.image.mode == "RGB"
    clear = tmp_path / "clear.png"
    Image.new("RGBA", (8, 8), (10, 20, 30, 0)).save(clear)
    loaded = load_image(clear)
    assert np.asarray(loaded.image)[0, 0].tolist() == [255, 255, 255]
    assert len(loaded.warnings) == 1 and "transparency" in loaded.warnings[0]


def test_multipage_tiff_takes_first_page_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "pages.tif"
    first = Image.new("RGB", (10, 6), (200, 0, 0))
    first.save(path, save_all=True, append_images=[Image.new("RGB", (5, 5), (0, 200, 0))])
    loaded = load_image(path)
    assert loaded.image.size == (10, 6) and np.asarray(loaded.image)[0, 0].tolist() == [200, 0, 0]
    assert "2 pages" in loaded.warnings[0]


def test_gif_and_bmp_and_webp_read(tmp_path: Path) -> None:
    for name in ("a.gif", "a.bmp", "a.webp"):
        Image.fromarray(_gradient(12, 9)).save(tmp_path / name)
        assert load_image(tmp_path / name).image.size == (12, 9)


def _png_header_only(path: Path, w: int, h: int) -> None:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))


def test_decompression_bomb_is_refused_with_the_flag_named(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    _png_header_only(path, 100_000, 100_000)
    with pytest.raises(ImageError, match=r"bomb\.png: 100000×100000 = 10000 megapixels exceeds .* raise --max-pixels"):
        load_image(path)


@pytest.mark.parametrize(("content", "reason"), [(b"", "empty file"), (b"not an image at all", "not an image file")])
def test_empty_and_non_image_files(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageError, match=reason):
        load_image(path)


def test_truncated_file_fails_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "cut.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:600])
    with pytest.raises(ImageError, match=r"cut\.png: cannot decode image") as info:
        load_image(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("mode", ["1", "L", "RGB", "RGBA", "P"])
def test_masks_of_any_mode_and_size(tmp_path: Path, mode: str) -> None:
    base = Image.new("L", (10, 5), 0)
    base.paste(255, (0, 0, 5, 5))
    mask = base.convert(mode) if mode != "RGBA" else Image.merge("RGBA", [base, base, base, Image.new("L", (10, 5), 255)])
    path = tmp_path / f"mask_{mode}.png"
    mask.save(path)
    out = load_mask(path, (20, 10))
    a = np.asarray(out)
    assert out.mode == "L" and out.size == (20, 10)
    assert set(np.unique(a)) == {0, 255}
    assert (a[:, :10] == 255).all() and (a[:, 10:] == 0).all()


def test_icc_profile_is_kept(tmp_path: Path) -> None:
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    path = tmp_path / "tagged.png"
    Image.fromarray(_gradient(8, 8)).save(path, icc_profile=icc)
    loaded = load_image(path)
    assert loaded.icc_profile == icc
    save_image(loaded.image, tmp_path / "out.jpg", icc_profile=loaded.icc_profile)
    assert Image.open(tmp_path / "out.jpg").info["icc_profile"] == icc


def test_save_is_atomic_and_leaves_no_partial_file(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file, not a folder")
    with pytest.raises(ImageError, match="cannot write output"):
        save_image(Image.new("RGB", (4, 4)), tmp_path / "blocker" / "out.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]
