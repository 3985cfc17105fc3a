"""``oldphoto restore`` end to end on real photos, with weights made by the real import path."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from oldphoto.cli import app


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "400"})
    return result.exit_code, result.output


@pytest.mark.parametrize("mode", ["quality", "scratch", "hr"])
def test_restores_a_real_scratched_photo_in_each_mode(tiny_weights: Path, photos: Path, tmp_path: Path, mode: str) -> None:
    src = photos / "scratched_c.png"
    before = src.read_bytes()
    out = tmp_path / f"restored {mode} é.png"
    code, output = _run("restore", str(src), str(out), "--weights", str(tiny_weights), "--mode", mode, "--device", "cpu")
    assert code == 0, output
    assert f"({mode} mode" in output
    with Image.open(out) as restored:
        assert restored.size == Image.open(src).size == (256, 336)
        assert restored.mode == "RGB"
    assert src.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [out.name]


def test_mask_of_another_size_implies_scratch_mode(tiny_weights: Path, photos: Path, tmp_path: Path) -> None:
    mask = tmp_path / "mask.png"
    m = Image.new("1", (50, 60), 0)
    m.paste(1, (20, 0, 25, 60))
    m.save(mask)
    out = tmp_path / "out.jpg"
    code, output = _run("restore", str(photos / "old_a.png"), str(out), "--weights", str(tiny_weights), "--mask", str(mask))
    assert code == 0, output
    assert "(scratch mode" in output
    assert Image.open(out).size == (298, 450) and Image.open(out).format == "JPEG"


def test_published_postprocess_rounds_the_size(tiny_weights: Path, photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.png"
    code, output = _run(
        "restore", str(photos / "old_a.png"), str(out), "--weights", str(tiny_weights), "--mode", "quality",
        "--postprocess", "published",
    )
    assert code == 0, output
    assert Image.open(out).size == (296, 448)  # round(74.5) = 74 and round(112.5) = 112: Python rounds half to even


def test_refuses_to_overwrite_the_input(tiny_weights: Path, photos: Path, tmp_path: Path) -> None:
    src = tmp_path / "photo.png"
    shutil.copy(photos / "old_a.png", src)
    before = src.read_bytes()
    code, output = _run("restore", str(src), str(src), "--weights", str(tiny_weights))
    assert code == 2
    assert "refusing to write over the input photo" in output
    assert src.read_bytes() == before


def test_missing_weights_are_a_one_line_error(photos: Path, tmp_path: Path) -> None:
    code, output = _run("restore", str(photos / "old_a.png"), str(tmp_path / "o.png"), "--weights", str(tmp_path))
    assert code == 1
    assert output.count("\n") == 1 and "no 'quality' model" in output
    assert not (tmp_path / "o.png").exists()


def test_unreadable_photo_is_a_one_line_error(tiny_weights: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    code, output = _run("restore", str(bad), str(tmp_path / "o.png"), "--weights", str(tiny_weights))
    assert code == 1
    assert output.startswith("error: ") and str(bad) in output and output.count("\n") == 1
    assert not (tmp_path / "o.png").exists()


def test_grey_photo_gives_grey_output(tiny_weights: Path, photos: Path, tmp_path: Path) -> None:
    grey = tmp_path / "grey.jpg"
    Image.open(photos / "old_a.png").convert("L").save(grey)
    out = tmp_path / "out.png"
    code, output = _run("restore", str(grey), str(out), "--weights", str(tiny_weights))
    assert code == 0, output
    assert Image.open(out).mode == "L"
    assert np.asarray(Image.open(out)).shape == (450, 298)


def _invoke(*args: str):  # noqa: ANN202 - click's Result
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "400"})


def _records(stdout: str) -> dict[str, dict]:
    import json

    return {Path(r["input"]).name: r for r in map(json.loads, stdout.splitlines())}


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _synthetic(path: Path, size: tuple[int, int], mode: str = "RGB", **save: object) -> Path:
    rng = np.random.default_rng(len(path.name))
    channels = {"L": 1, "RGB": 3, "CMYK": 4}[mode]
    a = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a[..., 0] if channels == 1 else a, mode=mode).save(path, **save)
    return path


def test_folder_with_a_nested_tree_and_a_corrupt_file(tiny_weights: Path, photos: Path, tmp_path: Path) -> None:
    src = tmp_path / "shoebox"
    (src / "1950s" / "summer é").mkdir(parents=True)
    shutil.copy(photos / "scratched_b.png", src / "1950s" / "summer é" / "beach.png")
    _synthetic(src / "portrait.jpg", (40, 56))
    (src / "1950s" / "torn.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF truncated")
    out = tmp_path / "restored"
    result = _invoke("restore", str(src), str(out), "--recursive", "--weights", str(tiny_weights), "--device", "cpu")
    assert result.exit_code == 1, result.output
    assert _files(out) == ["1950s/summer é/beach.png", "portrait.jpg"]
    assert "torn.jpg" in result.output and "not an image file" in result.output
    assert "│        2 │       0 │      1 │" in result.output  # restored / skipped / failed
    with Image.open(out / "1950s" / "summer é" / "beach.png") as beach, Image.open(out / "portrait.jpg") as portrait:
        assert (beach.size, beach.mode, beach.format) == ((256, 256), "RGB", "PNG")
        assert (portrait.size, portrait.mode, portrait.format) == ((40, 56), "RGB", "JPEG")


def test_resume_after_an_interrupted_run(tiny_weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from oldphoto.api import Restorer

    src = tmp_path / "in"
    for name in ("a.png", "b.png", "c.png"):
        _synthetic(src / name, (24, 20))
    out = tmp_path / "out"
    real = Restorer.restore_photo
    seen: list[int] = []

    def interrupt_second(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        seen.append(1)
        if len(seen) == 2:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Restorer, "restore_photo", interrupt_second)
    result = _invoke("restore", str(src), str(out), "--weights", str(tiny_weights), "--device", "cpu")
    assert result.exit_code == 130 and "run the same command again to resume" in result.output
    assert _files(out) == ["a.png"]
    first = (out / "a.png").stat().st_mtime_ns
    monkeypatch.setattr(Restorer, "restore_photo", real)
    result = _invoke("restore", str(src), str(out), "--weights", str(tiny_weights), "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    records = _records(result.stdout)
    assert {k: r["status"] for k, r in records.items()} == {"a.png": "skipped", "b.png": "restored", "c.png": "restored"}
    assert records["b.png"]["size"] == [24, 20] and records["b.png"]["mode"] == "quality"
    assert _files(out) == ["a.png", "b.png", "c.png"] and (out / "a.png").stat().st_mtime_ns == first
    assert not list(tmp_path.rglob("*.part"))


def test_masks_of_different_sizes_and_modes_from_a_folder(tiny_weights: Path, tmp_path: Path) -> None:
    src, masks = tmp_path / "in", tmp_path / "masks"
    for name in ("grey.png", "rgba.png", "one_bit.png", "palette.png", "none.png"):
        _synthetic(src / name, (32, 24))
    line = Image.new("L", (64, 48), 0)
    line.paste(255, (10, 0, 14, 48))
    masks.mkdir()
    line.resize((16, 12), Image.Resampling.NEAREST).save(masks / "grey.png")
    Image.merge("RGBA", [line, line, line, line]).save(masks / "rgba.png")
    line.convert("1").save(masks / "one_bit.bmp")
    line.convert("P").save(masks / "palette.gif")
    result = _invoke(
        "restore", str(src), str(tmp_path / "out"), "--mask", str(masks), "--weights", str(tiny_weights), "--json",
        "--comparison", str(tmp_path / "cmp"),
    )
    assert result.exit_code == 0, result.output
    modes = {k: r["mode"] for k, r in _records(result.stdout).items()}
    assert modes == {"grey.png": "scratch", "rgba.png": "scratch", "one_bit.png": "scratch", "palette.png": "scratch", "none.png": "quality"}
    for name in modes:
        with Image.open(tmp_path / "out" / name) as restored, Image.open(tmp_path / "cmp" / name) as cmp:
            assert (restored.size, restored.mode, cmp.size) == ((32, 24), "RGB", (64, 18 + 24))  # under the labels'' band


def test_detected_masks_are_saved_at_the_photo_size_and_can_be_passed_back(tiny_weights: Path, photos: Path, tmp_path: Path) -> None:
    src = photos / "scratched_c.png"
    code, output = _run(
        "restore", str(src), str(tmp_path / "out.png"), "--weights", str(tiny_weights), "--mode", "scratch",
        "--save-mask", str(tmp_path / "masks"),
    )
    assert code == 0, output
    saved = tmp_path / "masks" / "scratched_c.png"
    with Image.open(saved) as mask:
        assert mask.mode == "L" and mask.size == (256, 336) and set(np.unique(np.asarray(mask))) <= {0, 255}
    code, output = _run("restore", str(src), str(tmp_path / "again.png"), "--weights", str(tiny_weights), "--mask", str(saved))
    assert code == 0 and "(scratch mode" in output


def test_one_photos_mask_can_be_saved_to_a_file_named_like_an_image(tiny_weights: Path, photos: Path, tmp_path: Path) -> None:
    """As ``--comparison`` may: a user who types ``--save-mask b-mask.png`` gets that file, not a folder of that name."""
    src = photos / "scratched_c.png"
    saved = tmp_path / "c-mask.png"
    code, output = _run("restore", str(src), str(tmp_path / "out.png"), "--weights", str(tiny_weights), "--mode", "scratch",
                        "--save-mask", str(saved))
    assert code == 0, output
    assert saved.is_file()
    with Image.open(saved) as mask:
        assert mask.mode == "L" and mask.size == (256, 336)
    code, output = _run("restore", str(src), str(tmp_path / "jpeg.png"), "--weights", str(tiny_weights), "--save-mask",
                        str(tmp_path / "mask.jpg"))
    assert code == 2 and len(output.strip().splitlines()) == 1 and "losslessly" in output, output
    assert not (tmp_path / "jpeg.png").exists()
    code, output = _run("restore", str(photos), str(tmp_path / "many"), "--weights", str(tiny_weights), "--save-mask", str(saved))
    assert code == 2 and "needs a folder for a folder of photos" in output, output


def test_exif_rotated_jpeg_gives_an_upright_output(tiny_weights: Path, tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "ScanCo"
    src = _synthetic(tmp_path / "rotated.jpg", (40, 24), exif=exif)
    out = tmp_path / "out.jpg"
    code, output = _run("restore", str(src), str(out), "--weights", str(tiny_weights))
    assert code == 0, output
    with Image.open(out) as restored:
        assert restored.size == (24, 40) and restored.format == "JPEG"
        assert restored.getexif()[0x0112] == 1 and restored.getexif()[0x010F] == "ScanCo"


@pytest.mark.parametrize(
    ("name", "make", "expected_mode"),
    [
        ("deep.png", lambda p: Image.fromarray((np.arange(32 * 24, dtype=np.uint16).reshape(24, 32) * 85)).save(p), "I;16"),  # 16-bit stays 16-bit
        ("grey.jpg", lambda p: _synthetic(p, (32, 24), "L"), "L"),
        ("cmyk.jpg", lambda p: _synthetic(p, (32, 24), "CMYK"), "RGB"),
    ],
)
def test_16_bit_grey_and_cmyk_inputs(tiny_weights: Path, tmp_path: Path, name: str, make, expected_mode: str) -> None:  # noqa: ANN001
    src = tmp_path / "in" / name
    src.parent.mkdir()
    make(src)
    result = _invoke("restore", str(src), str(tmp_path / "out"), "--weights", str(tiny_weights), "--json")
    assert result.exit_code == 0, result.output
    (record,) = _records(result.stdout).values()
    assert record["status"] == "restored" and record["size"] == [32, 24]
    with Image.open(tmp_path / "out" / name) as restored:
        assert restored.size == (32, 24) and restored.mode == expected_mode
        assert restored.format == ("PNG" if name.endswith(".png") else "JPEG")


def test_decompression_bomb_header_and_max_pixels(tiny_weights: Path, tmp_path: Path) -> None:
    from tests.test_imageio import _png_header_only

    src = tmp_path / "in"
    src.mkdir()
    _png_header_only(src / "bomb.png", 50_000, 50_000)
    _synthetic(src / "fine.png", (32, 24))
    result = _invoke("restore", str(src), str(tmp_path / "out"), "--weights", str(tiny_weights), "--json")
    assert result.exit_code == 1
    records = _records(result.stdout)
    assert records["bomb.png"]["status"] == "failed" and "raise --max-pixels" in records["bomb.png"]["error"]
    assert records["fine.png"]["status"] == "restored" and _files(tmp_path / "out") == ["fine.png"]
    result = _invoke("restore", str(src / "fine.png"), str(tmp_path / "small.png"), "--max-pixels", "700", "--weights", str(tiny_weights))
    assert result.exit_code == 1 and "32×24 = 0 megapixels exceeds the limit of 0.0007" in result.output
    assert not (tmp_path / "small.png").exists()


def test_folder_onto_itself_is_a_usage_error(tiny_weights: Path, tmp_path: Path) -> None:
    src = _synthetic(tmp_path / "in" / "a.png", (16, 16)).parent
    before = _files(src)
    code, output = _run("restore", str(src), str(src), "--weights", str(tiny_weights))
    assert code == 2 and "OUT must be a different folder from IN" in output
    assert _files(src) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--mode", "best"), "unknown mode 'best'"),
        (("--format", "gif"), "cannot write format 'gif'"),
        (("--device", "tpu"), "unknown device 'tpu'"),
        (("--mode", "quality", "--mask", "m.png"), "a mask needs a mode that repairs damage"),
        (("--postprocess", "exact"), "unknown postprocess 'exact'"),
        (("--face-strength", "1.5"), "face strength must be between 0 and 1, got 1.5"),
    ],
)
def test_bad_options_exit_2(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    src = _synthetic(tmp_path / "in" / "a.png", (16, 16))
    _synthetic(tmp_path / "m.png", (16, 16), "L")
    result = CliRunner().invoke(app, ["restore", str(src.parent), str(tmp_path / "out"), *args], env={"COLUMNS": "400"})
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "out").exists()


def test_info_lists_the_weights_in_a_folder(tiny_weights: Path) -> None:
    code, output = _run("info", "--weights", str(tiny_weights))
    assert code == 0, output
    assert "oldphoto 0.1.0" in output and "torch" in output and "cpu" in output
    assert f"weights are looked for in: --weights {tiny_weights}" in output
    for name in ("quality", "scratch", "hr", "detector"):
        assert re.search(rf"│ {name} +│ yes +│ weights dir +│ [-a-z]+ +│ {re.escape(str(tiny_weights))} +│", output), output


def test_the_cli_does_not_import_torch_at_start_up() -> None:
    import subprocess
    import sys

    code = "import sys, oldphoto.cli; print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
