"""Restore's options as a user meets them: every value checked before any work, a bad mask is a usage
error, the offline fallback told once, labelled comparisons, ``weights list`` readable at 80 columns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from oldphoto.cli import app
from tests.test_model_choice import _records, _small_photos
from tests.test_published_download import _closed_port, env, release  # noqa: F401 - fixtures


def _cli(*args: object, columns: int = 300):  # noqa: ANN202 - click's Result
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": str(columns)})


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--max-memory", "banana"), "--max-memory 'banana': give a size such as 4GB"),
        (("--tile", "x"), "--tile 'x': give a tile side in pixels"),
        (("--precision", "fp8"), "unknown precision 'fp8'"),
        (("--device", "tpu"), "unknown device 'tpu'"),
        (("--face-size", "300"), "face size must be 256 or 512"),
        (("--face-strength", "2"), "face strength must be between 0 and 1"),
        (("--engine", "ray", "--max-memory", "banana"), "--max-memory 'banana': give a size"),
        (("--engine", "ray", "--device", "tpu"), "unknown device 'tpu'"),
        (("--engine", "ray", "--tile", "8"), "--tile '8': tiles must be at least 16 pixels"),
    ],
)
def test_every_option_is_checked_before_any_work(
    env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...], message: str  # noqa: F811
) -> None:
    # With the Hub down, any work (choosing the model) would print a note before the error; with
    # --engine ray it would start Ray. The error must be all there is.
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    src = _small_photos(tmp_path / "in")
    result = _cli("restore", src, tmp_path / "out", *args)
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [result.stderr.splitlines()[0]] and message in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()


def test_an_unreadable_mask_file_is_a_usage_error(tmp_path: Path) -> None:
    src = _small_photos(tmp_path / "in") / "a.png"
    mask = tmp_path / "mask.png"
    mask.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    result = _cli("restore", src, tmp_path / "o.png", "--mask", mask, "--model", "lite", "--device", "cpu")
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: --mask {mask}: ") and result.stderr.count("\n") == 1, result.stderr
    assert not (tmp_path / "o.png").exists()


def test_the_offline_fallback_is_told_once_and_short(env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    src = _small_photos(tmp_path / "in")
    first = _cli("restore", src / "a.png", tmp_path / "1.png", "--device", "cpu")
    assert first.exit_code == 0, first.output
    notes = [line for line in first.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "'oldphoto weights download --help'" in notes[0] and "Errno" not in notes[0], first.stderr
    assert len(notes[0]) < 200
    again = _cli("restore", src, tmp_path / "out", "--device", "cpu")
    assert again.exit_code == 0, again.output
    assert "note:" not in again.stderr and "lite model; faces: off" in again.stderr  # the summary still names it
    json_run = _cli("restore", src / "b.png", tmp_path / "2.png", "--json", "--device", "cpu")
    assert "note:" not in json_run.stderr and _records(json_run)[0]["model"] == "lite"


def test_the_comparison_is_labelled_before_and_after(tmp_path: Path) -> None:
    from oldphoto.batch import side_by_side

    before = Image.new("RGB", (300, 200), (90, 90, 90))
    after = Image.new("RGB", (300, 200), (160, 160, 160))
    joined = side_by_side(before, after)
    band = joined.height - 200
    assert joined.width == 600 and band == 18, joined.size  # 12-pixel labels: 1/20 of 200, at least 12
    pixels = np.asarray(joined)
    # The photos are untouched below the band; the band holds a light label on a dark ground over each half.
    assert (pixels[band:, :300] == 90).all() and (pixels[band:, 300:] == 160).all()
    for half in (pixels[:band, :300], pixels[:band, 300:]):
        assert half.min() < 40 and half.max() > 200
        ink = half.max(axis=2) > 128
        assert 60 < ink.sum() < ink.size // 3  # a word's worth of strokes, not a filled box
    left, right = (pixels[:band, :300].max(axis=2) > 128), (pixels[:band, 300:].max(axis=2) > 128)
    assert not np.array_equal(left, right)  # two different words
    grey = side_by_side(before.convert("L"), after.convert("L"))
    assert grey.mode == "L" and grey.size == joined.size


def test_weights_list_keeps_names_whole_at_80_columns() -> None:
    result = _cli("weights", "list", columns=80)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, result.stdout
    text = result.stdout
    for name in ("databuzzword/bringing-old-photos-back-to-life/Global/checkpoints", "leonelhs/zeroscratches", "face512"):
        assert name in text, text
