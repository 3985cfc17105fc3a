"""Provenance XMP in every output, read back by the real exiftool, and ``oldphoto inspect``."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from oldphoto.cli import app
from oldphoto.deepio import png16_bytes, tiff16_bytes
from oldphoto.fsutil import sha256_file
from oldphoto.provenance import build_xmp, parse, read_xmp

EXIFTOOL = shutil.which("exiftool")
needs_exiftool = pytest.mark.skipif(EXIFTOOL is None, reason="exiftool not installed (apt-get install libimage-exiftool-perl)")

ORIGINAL_XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    b'<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:xmpMM="http://ns.adobe.com/xap/1.0/mm/"'
    b' xmpMM:DocumentID="xmp.did:scan-0001"><dc:title><rdf:Alt><rdf:li xml:lang="x-default">Grandma, 1950</rdf:li>'
    b"</rdf:Alt></dc:title></rdf:Description></rdf:RDF></x:xmpmeta>"
)


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "400"})
    return result.exit_code, result.output


def _exiftool(path: Path) -> dict:
    out = subprocess.run([EXIFTOOL, "-j", "-G1", "-a", "-struct", str(path)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)[0]


def _photo(path: Path) -> Path:
    """An 8-bit photo with EXIF and the original's XMP, in the format of its extension."""
    rng = np.random.default_rng(3)
    image = Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x010F] = "Kodak"
    fmt = {".jpg": "JPEG", ".png": "PNG", ".tif": "TIFF", ".webp": "WEBP"}[path.suffix]
    from oldphoto.imageio import save_image

    save_image(image, path, format=fmt, exif=exif.tobytes(), xmp=ORIGINAL_XMP)
    return path


@needs_exiftool
@pytest.mark.parametrize("ext", [".png", ".jpg", ".tif", ".webp", "16.png", "16.tif"])
def test_exiftool_reads_our_provenance_in_every_format(tiny_weights: Path, tmp_path: Path, ext: str) -> None:
    if ext.startswith("16"):
        src = tmp_path / f"scan.{ext[3:]}"
        pixels = np.random.default_rng(5).integers(0, 65536, (40, 48, 3), dtype=np.uint16)
        src.write_bytes((png16_bytes if ext.endswith("png") else tiff16_bytes)(pixels, xmp=ORIGINAL_XMP))
    else:
        src = _photo(tmp_path / f"scan{ext}")
    out = tmp_path / "out" / src.name
    code, output = _run("restore", str(src), str(out), "--weights", str(tiny_weights), "--device", "cpu", "--mode", "quality", "--no-faces")
    assert code == 0, output
    tags = _exiftool(out)
    assert tags["XMP-oldphoto:Tool"].startswith("oldphoto ")
    assert tags["XMP-oldphoto:Model"] == str(tiny_weights)
    assert tags["XMP-oldphoto:Mode"] == "quality" and tags["XMP-oldphoto:Mask"] == "none"
    assert tags["XMP-oldphoto:Precision"] == "fp32" and tags["XMP-oldphoto:Device"] == "cpu"
    assert tags["XMP-oldphoto:BitDepth"] == (16 if ext.startswith("16") else 8)
    assert tags["XMP-oldphoto:Original"] == src.name and tags["XMP-oldphoto:OriginalSHA256"] == sha256_file(src)
    weights = sha256_file(tiny_weights / "quality.safetensors")
    assert tags["XMP-oldphoto:Weights"] == [f"quality sha256:{weights}"]  # an rdf:Bag
    assert tags["XMP-xmpMM:DerivedFrom"]["FilePath"] == src.name
    assert tags["XMP-xmpMM:DerivedFrom"]["DocumentID"] == "xmp.did:scan-0001"
    assert tags["XMP-xmpMM:OriginalDocumentID"] == "xmp.did:scan-0001"
    history = tags["XMP-xmpMM:History"]
    assert (history if isinstance(history, dict) else history[-1])["Action"] == "derived"
    assert tags["XMP-dc:Title"] == "Grandma, 1950"  # the original's XMP is kept
    if not ext.startswith("16"):
        assert tags["IFD0:Make"] == "Kodak"  # and its EXIF


def test_no_provenance_keeps_only_the_originals_xmp(tiny_weights: Path, tmp_path: Path) -> None:
    src = _photo(tmp_path / "scan.png")
    out = tmp_path / "out.png"
    code, output = _run("restore", str(src), str(out), "--weights", str(tiny_weights), "--device", "cpu", "--no-provenance")
    assert code == 0, output
    with Image.open(out) as image:
        xmp = image.info.get("xmp")
    assert xmp is not None and parse(xmp.encode() if isinstance(xmp, str) else xmp) is None and b"Grandma" in ORIGINAL_XMP
    code, output = _run("inspect", str(out))
    assert code == 1 and "no oldphoto provenance" in output


def test_the_same_restoration_writes_the_same_bytes(tiny_weights: Path, tmp_path: Path) -> None:
    """No time or random ID in the packet: a repeated run is byte for byte the same file."""
    src = _photo(tmp_path / "scan.png")
    for name in ("a.png", "b.png"):
        assert _run("restore", str(src), str(tmp_path / name), "--weights", str(tiny_weights), "--device", "cpu")[0] == 0
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


def test_restoring_a_restoration_continues_its_history() -> None:
    first = build_xmp({"tool": "oldphoto 0.1.0", "model": "lite", "mode": "quality", "mask": "none", "bits": 8,
                       "original": "scan.tif", "weights": {"quality": "ab"}}, ORIGINAL_XMP)
    second = build_xmp({"tool": "oldphoto 0.1.0", "model": "lite", "mode": "scratch", "mask": "detected", "bits": 8,
                        "original": "restored.tif", "weights": {"scratch": "cd"}}, first)
    record = parse(second)
    assert record["mode"] == "scratch" and record["weights"] == {"scratch": "cd"} and record["original"] == "restored.tif"
    assert len(record["history"]) == 2 and "from scan.tif" in record["history"][0]
    assert second.count(b"Grandma, 1950") == 1 and second.count(b"<oldphoto:Mode>") == 1


def test_inspect_prints_the_provenance_and_checks_the_weights(tiny_weights: Path, tmp_path: Path) -> None:
    src = _photo(tmp_path / "scan.jpg")
    out = tmp_path / "out.jpg"
    assert _run("restore", str(src), str(out), "--weights", str(tiny_weights), "--device", "cpu", "--mode", "quality")[0] == 0
    code, output = _run("inspect", str(out), "--check-weights")
    assert code == 0, output
    assert f"original_sha256  {sha256_file(src)}" in output and f"(matches {tiny_weights})" in output
    code, output = _run("inspect", str(out), "--json")
    assert code == 0 and json.loads(output)["mode"] == "quality"
    # Weights that changed since: the check says so and exits 1.
    copy = tmp_path / "other"
    shutil.copytree(tiny_weights, copy)
    out2 = tmp_path / "out2.png"
    code, output = _run("restore", str(src), str(out2), "--weights", str(copy), "--device", "cpu", "--mode", "quality", "--no-faces")
    assert code == 0, output
    (copy / "quality.safetensors").write_bytes((copy / "quality.safetensors").read_bytes() + b" ")
    code, output = _run("inspect", str(out2), "--check-weights")
    assert code == 1 and "differs" in output, output


@needs_exiftool
def test_restore_file_from_python_writes_the_same_provenance(tiny_weights: Path, tmp_path: Path) -> None:
    from oldphoto.api import Restorer

    src = _photo(tmp_path / "scan.webp")
    result = Restorer(tiny_weights, device="cpu", faces=False).restore_file(src, tmp_path / "out.webp", mode="quality")
    tags = _exiftool(tmp_path / "out.webp")
    assert tags["XMP-oldphoto:OriginalSHA256"] == sha256_file(src) and tags["XMP-oldphoto:Mode"] == result.mode
    code, output = _run("restore", str(src), str(tmp_path / "cli.webp"), "--weights", str(tiny_weights), "--device", "cpu",
                        "--mode", "quality", "--no-faces")
    assert code == 0 and (tmp_path / "cli.webp").read_bytes() == (tmp_path / "out.webp").read_bytes()


def test_a_jpeg_whose_xmp_fills_its_segment_still_gets_the_provenance(tiny_weights: Path, tmp_path: Path) -> None:
    from oldphoto.imageio import save_image

    src = tmp_path / "scan.jpg"
    big = ORIGINAL_XMP.replace(b"Grandma, 1950", b"x" * 65_000)
    save_image(Image.new("RGB", (40, 32), (90, 80, 70)), src, xmp=big)
    out = tmp_path / "out.jpg"
    code, output = _run("restore", str(src), str(out), "--weights", str(tiny_weights), "--device", "cpu", "--mode", "quality", "--no-faces")
    assert code == 0, output
    record = parse(read_xmp(out))
    assert record is not None and record["original_sha256"] == sha256_file(src)


def test_a_jpeg_comparison_gets_the_provenance_when_the_originals_xmp_is_large(tiny_weights: Path, tmp_path: Path) -> None:
    from oldphoto.imageio import save_image

    src = tmp_path / "scan.png"
    big = ORIGINAL_XMP.replace(b"Grandma, 1950", b"x" * 70_000)  # fits a PNG, not one JPEG segment
    save_image(Image.new("RGB", (40, 32), (90, 80, 70)), src, xmp=big)
    out, pair = tmp_path / "out.png", tmp_path / "pair.jpg"
    code, output = _run("restore", str(src), str(out), "--comparison", str(pair), "--weights", str(tiny_weights),
                        "--device", "cpu", "--mode", "quality", "--no-faces")
    assert code == 0, output
    assert b"x" * 70_000 in read_xmp(out)  # the PNG keeps the original's packet whole
    record = parse(read_xmp(pair))
    assert record is not None and record["original_sha256"] == sha256_file(src)
