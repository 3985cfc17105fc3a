"""Files a family might drop on the web app, and the words the page says of them, for the ui tests."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

#: What the page says once when dlib cannot be imported (no faces extra).
NO_ADDON = "Faces are not enhanced: the face add-on is not installed on this computer (oldphoto's faces extra)."


def bad_files(folder: Path, photos: Path) -> dict[str, tuple[Path, str]]:
    """Unusable uploads and the words the page must show for each."""
    import struct
    import zlib

    folder.mkdir(parents=True, exist_ok=True)
    text = folder / "letter.jpg"
    text.write_text("Dear Ann, here are the photos from the wedding.\n")
    jpeg = folder / "whole.jpg"
    Image.open(photos / "old_a.png").convert("RGB").save(jpeg, quality=90)
    truncated = folder / "truncated.jpg"
    truncated.write_bytes(jpeg.read_bytes()[: jpeg.stat().st_size // 3])
    jpeg.unlink()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    bomb = folder / "bomb.png"
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))
    dot = folder / "dot.png"
    Image.new("RGB", (1, 1), (200, 180, 150)).save(dot)
    return {
        "text": (text, "letter.jpg: not an image file"),
        "truncated": (truncated, "truncated.jpg: cannot decode image"),
        "bomb": (bomb, "bomb.png: 100000×100000 = 10000 megapixels exceeds the limit"),
        "tiny": (dot, "dot.png: photo is 1×1 pixels; at least 8×8 is needed"),
    }


def rotated_jpeg(photos: Path, path: Path) -> Path:
    """A JPEG stored on its side with EXIF orientation 6: upright it is scratched_c's 256×336."""
    upright = Image.open(photos / "scratched_c.png").convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6
    upright.transpose(Image.Transpose.ROTATE_90).save(path, quality=92, exif=exif.tobytes())
    return path
