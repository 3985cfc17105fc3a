"""Real-world image files: formats, bit depths, orientation, metadata, masks, bombs."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from oldphoto.errors import ImageError
from oldphoto.imageio import output_format, save_image
from oldphoto.inputs import load_mask, load_photo


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
    loaded = load_photo(path)
    assert loaded.image.size == (20, 40)
    out = tmp_path / "out.jpg"
    save_image(loaded.image, out, exif=loaded.exif)
    written = Image.open(out).getexif()
    assert written[0x0112] == 1 and written[0x010F] == "ScanCo"


def test_16_bit_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    path = tmp_path / "deep.png"
    a = np.array([[0, 257 * 128, 65535, 257 * 3]], dtype=np.uint16)
    Image.fromarray(a).save(path)
    loaded = load_photo(path)
    assert loaded.image.mode == "L"
    assert np.asarray(loaded.image).tolist() == [[0, 128, 255, 3]]


def test_grey_jpeg_stays_grey(tmp_path: Path) -> None:
    path = tmp_path / "grey.jpg"
    Image.fromarray(_gradient(30, 20)[..., 0]).save(path)
    assert load_photo(path).image.mode == "L"


def test_cmyk_jpeg_becomes_rgb(tmp_path: Path) -> None:
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 12), (0, 255, 255, 0)).save(path)
    loaded = load_photo(path)
    assert loaded.image.mode == "RGB" and loaded.image.size == (16, 12)
    r, g, b = np.asarray(loaded.image)[6, 8]
    assert r > 200 and g < 60 and b < 60


def test_opaque_rgba_no_warning_transparent_composited_on_white(tmp_path: Path) -> None:
    opaque = tmp_path / "opaque.png"
    Image.new("RGBA", (8, 8), (10, 20, 30, 255)).save(opaque)
    loaded = load_photo(opaque)
    assert loaded.warnings == [] and loaded.image.mode == "RGB"
    clear = tmp_path / "clear.png"
    Image.new("RGBA", (8, 8), (10, 20, 30, 0)).save(clear)
    loaded = load_photo(clear)
    assert np.asarray(loaded.image)[0, 0].tolist() == [255, 255, 255]
    assert len(loaded.warnings) == 1 and "transparency" in loaded.warnings[0]


def test_multipage_tiff_takes_first_page_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "pages.tif"
    first = Image.new("RGB", (10, 6), (200, 0, 0))
    first.save(path, save_all=True, append_images=[Image.new("RGB", (5, 5), (0, 200, 0))])
    loaded = load_photo(path)
    assert loaded.image.size == (10, 6) and np.asarray(loaded.image)[0, 0].tolist() == [200, 0, 0]
    assert "2 pages" in loaded.warnings[0]


def test_gif_and_bmp_and_webp_read(tmp_path: Path) -> None:
    for name in ("a.gif", "a.bmp", "a.webp"):
        Image.fromarray(_gradient(12, 9)).save(tmp_path / name)
        assert load_photo(tmp_path / name).image.size == (12, 9)


def _png_header_only(path: Path, w: int, h: int) -> None:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))


def test_decompression_bomb_is_refused_with_the_flag_named(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    _png_header_only(path, 100_000, 100_000)
    with pytest.raises(ImageError, match=r"bomb\.png: 100000×100000 = 10000 megapixels exceeds .* raise --max-pixels"):
        load_photo(path)


@pytest.mark.parametrize(("content", "reason"), [(b"", "empty file"), (b"not an image at all", "not an image file")])
def test_empty_and_non_image_files(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageError, match=reason):
        load_photo(path)


def test_truncated_file_fails_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "cut.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:600])
    with pytest.raises(ImageError, match=r"cut\.png: cannot decode image") as info:
        load_photo(path)
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
    loaded = load_photo(path)
    assert loaded.icc_profile == icc
    save_image(loaded.image, tmp_path / "out.jpg", icc_profile=loaded.icc_profile)
    assert Image.open(tmp_path / "out.jpg").info["icc_profile"] == icc


def test_save_is_atomic_and_leaves_no_partial_file(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file, not a folder")
    with pytest.raises(ImageError, match="cannot write output"):
        save_image(Image.new("RGB", (4, 4)), tmp_path / "blocker" / "out.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]


def test_outputs_get_the_usual_file_mode(tmp_path: Path) -> None:
    """The temp file behind an atomic write is created 0600; the output must not keep that."""
    probe = tmp_path / "plain"
    probe.write_bytes(b"")
    expected = probe.stat().st_mode & 0o777  # what open() gives a new file under this umask
    save_image(Image.new("RGB", (4, 4)), tmp_path / "out.png")
    assert (tmp_path / "out.png").stat().st_mode & 0o777 == expected


def test_16_bit_tiff_and_multipage_gif(tmp_path: Path) -> None:
    deep = tmp_path / "deep.tif"
    Image.fromarray(np.array([[0, 257 * 200, 65535, 1000]] * 8, dtype=np.uint16)).save(deep)
    loaded = load_photo(deep)
    assert loaded.image.mode == "L" and np.asarray(loaded.image)[0].tolist() == [0, 200, 255, 4]
    gif = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (9, 8), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    frames[0].save(gif, save_all=True, append_images=frames[1:])
    loaded = load_photo(gif)
    assert loaded.image.mode == "RGB" and loaded.image.size == (9, 8) and "3 frames" in loaded.warnings[0]
    assert loaded.image.getpixel((4, 4)) == (255, 0, 0)


@pytest.mark.parametrize(("mode", "value", "expected"), [("1", 1, 255), ("P", 7, None), ("LA", (90, 255), 90), ("I", 40000, 156)])
def test_other_modes_flatten_to_8_bit(tmp_path: Path, mode: str, value: object, expected: int | None) -> None:
    path = tmp_path / f"m{mode}.png" if mode != "I" else tmp_path / "m.tif"
    Image.new(mode, (8, 8), value).save(path)
    loaded = load_photo(path)
    assert loaded.warnings == []
    if mode == "P":
        assert loaded.image.mode == "RGB"
    else:
        assert loaded.image.mode == "L" and loaded.image.getpixel((3, 3)) == expected


def test_tiff_layout_tags_are_not_carried_as_exif(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x010F] = "ScanCo"
    exif[0x0112] = 8
    Image.new("RGB", (12, 10), (1, 2, 3)).save(tmp_path / "scan.tif", exif=exif)
    loaded = load_photo(tmp_path / "scan.tif")
    assert loaded.image.size == (10, 12)
    carried = Image.Exif()
    carried.load(loaded.exif)
    assert carried[0x010F] == "ScanCo" and carried.get(0x0112, 1) == 1
    assert set(carried) <= {0x010F, 0x0112}  # no strip offsets, bits per sample, compression...


def test_grey_stays_grey_in_every_format_that_can_hold_it(tmp_path: Path) -> None:
    grey = Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8) * 4)
    for name in ("g.png", "g.jpg", "g.tif", "g.bmp"):
        save_image(grey, tmp_path / name)
        with Image.open(tmp_path / name) as back:
            assert back.mode == "L" and back.size == (8, 8)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "g.png")), np.asarray(grey))
    assert np.array_equal(np.asarray(Image.open(tmp_path / "g.tif")), np.asarray(grey))


def test_oversized_exif_is_dropped_for_jpeg_only(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x010E] = "x" * 70_000
    big = exif.tobytes()
    save_image(Image.new("RGB", (8, 8)), tmp_path / "big.jpg", exif=big)
    save_image(Image.new("RGB", (8, 8)), tmp_path / "big.png", exif=big)
    assert 0x010E not in Image.open(tmp_path / "big.jpg").getexif()
    assert len(Image.open(tmp_path / "big.png").getexif()[0x010E]) == 70_000


def test_mask_honours_its_own_exif_orientation(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    stored = Image.new("L", (10, 4), 0)
    stored.paste(255, (0, 0, 10, 1))  # top row as stored; shown as the right-hand column
    stored.save(tmp_path / "m.png", exif=exif)
    a = np.asarray(load_mask(tmp_path / "m.png", (4, 10)))
    assert (a[:, 3] == 255).all() and (a[:, :3] == 0).all()


def test_format_helpers() -> None:
    from oldphoto.errors import UsageError
    from oldphoto.imageio import choose_output_format, normalise_format

    assert [normalise_format(f) for f in ("jpg", ".TIF", "png", "jpeg", "webp")] == ["JPEG", "TIFF", "PNG", "JPEG", "WEBP"]
    assert choose_output_format("GIF") == ("PNG", ".png") and choose_output_format("JPEG") == ("JPEG", ".jpg")
    assert choose_output_format("GIF", "tiff") == ("TIFF", ".tif") and choose_output_format(None) == ("PNG", ".png")
    assert output_format("a/b.JPEG") == "JPEG"
    with pytest.raises(UsageError, match="cannot write format 'gif'"):
        normalise_format("gif")
    with pytest.raises(UsageError, match=r"x\.gif: cannot write '\.gif' files"):
        output_format("x.gif")
