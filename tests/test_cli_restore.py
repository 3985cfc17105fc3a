"""``oldphoto restore`` end to end on real photos, with weights made by the real import path."""

from __future__ import annotations

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
