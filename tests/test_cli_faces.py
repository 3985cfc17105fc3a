"""The face stage through the CLI: flags, JSON records, saved crops, strength 0, missing extra."""

from __future__ import annotations

import builtins
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from oldphoto.cli import app


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "400"})
    return result.exit_code, result.stdout, result.output


@pytest.fixture()
def needs_dlib() -> None:
    from oldphoto.faces import faces_available

    if not faces_available():
        pytest.skip("the faces extra (dlib-bin, face-recognition-models) is not installed")


def test_faces_only_mode_records_faces_and_saves_crops(needs_dlib: None, tiny_weights: Path, photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.png"
    code, stdout, output = _run(
        "restore", str(photos / "scratched_c.png"), str(out), "--weights", str(tiny_weights), "--mode", "none",
        "--save-faces", str(tmp_path / "faces"), "--json",
    )
    assert code == 0, output
    record = json.loads(stdout.strip().splitlines()[-1])
    assert record["mode"] == "none" and record["status"] == "restored"
    assert [f["box"] for f in record["faces"]] == [[101, 141, 173, 213]]
    assert record["faces"][0]["enhanced"] is True
    assert sorted(p.name for p in (tmp_path / "faces").iterdir()) == [
        "scratched_c_1_aligned.png", "scratched_c_1_compare.png", "scratched_c_1_restored.png",
    ]
    assert Image.open(out).size == (256, 336)


def test_face_strength_zero_returns_the_input_exactly(needs_dlib: None, tiny_weights: Path, photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.png"
    code, _, output = _run(
        "restore", str(photos / "scratched_b.png"), str(out), "--weights", str(tiny_weights), "--mode", "none",
        "--faces", "--face-strength", "0",
    )
    assert code == 0, output
    assert "0 of 1 faces enhanced" in output
    original = np.asarray(Image.open(photos / "scratched_b.png").convert("RGB"))
    assert np.array_equal(np.asarray(Image.open(out)), original)


def test_no_faces_flag_is_stated_in_the_summary(tiny_weights: Path, photos: Path, tmp_path: Path) -> None:
    code, _, output = _run(
        "restore", str(photos / "old_a.png"), str(tmp_path / "o.png"), "--weights", str(tiny_weights), "--no-faces",
    )
    assert code == 0, output
    assert "faces off" in output


def test_faces_without_the_extra_says_what_to_install(
    tiny_weights: Path, photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_import = builtins.__import__

    def no_dlib(name: str, *args, **kwargs):
        if name == "dlib" or name.startswith("dlib."):
            raise ImportError("No module named 'dlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(__import__("sys").modules, "dlib", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_dlib)
    monkeypatch.setattr("importlib.import_module", lambda name, *a: no_dlib(name))
    out = tmp_path / "o.png"
    code, _, output = _run("restore", str(photos / "old_a.png"), str(out), "--weights", str(tiny_weights), "--faces")
    assert code == 1
    assert "pip install '.[faces]' in oldphoto's folder" in output and output.count("\n") == 1
    assert not out.exists()


def test_bad_face_size_is_a_usage_error(tiny_weights: Path, photos: Path, tmp_path: Path) -> None:
    code, _, output = _run(
        "restore", str(photos / "old_a.png"), str(tmp_path / "o.png"), "--weights", str(tiny_weights), "--face-size", "300",
    )
    assert code == 2 and "face size must be 256 or 512" in output
