"""``oldphoto ui``: the page's plain functions, without a browser (the page itself: ``test_ui_browser.py``)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from oldphoto.errors import ImageError
from oldphoto.inputs import load_mask
from oldphoto.ui.session import MASK_COLOUR, MASK_OPACITY, Session, faces_off_reason, mask_from_layers, mask_layer, open_photo
from tests.support.ui_files import NO_ADDON, bad_files, rotated_jpeg

ROOT = Path(__file__).resolve().parent.parent


# --- the plain functions (no browser, no Gradio) ---------------------------------------------


@pytest.mark.parametrize("kind", ["text", "truncated", "bomb", "tiny"])
def test_bad_uploads_are_one_readable_line_naming_only_the_file(tmp_path: Path, photos: Path, kind: str) -> None:
    path, words = bad_files(tmp_path / "deep" / "gradio-cache", photos)[kind]
    with pytest.raises(ImageError) as caught:
        open_photo(path)
    message = str(caught.value)
    assert words in message
    assert str(path.parent) not in message and "\n" not in message


def test_painted_layer_becomes_the_mask_by_the_mask_rule() -> None:
    size = (40, 30)
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    stroke = Image.new("RGBA", (30, 4), (*MASK_COLOUR, round(255 * MASK_OPACITY)))
    layer.paste(stroke, (5, 10))
    faint = Image.new("RGBA", (5, 5), (*MASK_COLOUR, 100))  # below half brightness once composited onto black
    layer.paste(faint, (30, 20))
    mask = mask_from_layers([layer], size)
    a = np.asarray(mask)
    assert mask.mode == "L" and set(np.unique(a)) == {0, 255}
    assert (a[10:14, 5:35] == 255).all() and a.sum() == 255 * 30 * 4
    # The same rule as a mask file: the layer saved and passed to load_mask gives the same mask.
    assert np.array_equal(a, np.asarray(load_mask(layer, size)))


def test_layers_add_up_and_are_fitted_to_the_photo_by_nearest_neighbour() -> None:
    half = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    half.paste(Image.new("RGBA", (5, 10), (255, 255, 255, 255)), (0, 0))
    dot = Image.new("RGBA", (20, 20), (0, 0, 0, 0))
    dot.putpixel((19, 19), (255, 255, 0, 255))
    a = np.asarray(mask_from_layers([half, None, dot], (20, 20))) > 0
    assert a[:, :10].all() and a[19, 19] and a.sum() == 20 * 10 + 1
    assert not np.asarray(mask_from_layers([], (20, 20))).any()


def test_detected_mask_survives_the_trip_through_the_editor_layer() -> None:
    rng = np.random.default_rng(0)
    mask = Image.fromarray((rng.random((33, 47)) > 0.7).astype(np.uint8) * 255, mode="L")
    assert np.array_equal(np.asarray(mask_from_layers([mask_layer(mask, mask.size)], mask.size)), np.asarray(mask))
    assert not np.asarray(mask_from_layers([mask_layer(None, (5, 5))], (5, 5))).any()


def _cli(*args: str) -> tuple[int, str]:
    from oldphoto.cli import app

    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "400"})
    return result.exit_code, result.output


def test_session_restore_gives_the_cli_bytes_and_writes_only_to_its_folder(
    tiny_weights: Path, photos: Path, tmp_path: Path
) -> None:
    from oldphoto.api import Restorer

    src = rotated_jpeg(photos, tmp_path / "grandad.jpg")
    painted = Image.new("RGBA", (256, 336), (0, 0, 0, 0))
    painted.paste(Image.new("RGBA", (200, 6), (*MASK_COLOUR, 191)), (20, 100))
    session = Session(Restorer(tiny_weights, device="cpu", faces=False), tmp_path / "work")
    mask = mask_from_layers([painted], (256, 336))
    result = session.restore(src, mask, choice="auto", faces=False)
    assert result.output.name == "grandad-restored.jpg" and result.mask is not None
    assert result.output.is_relative_to(tmp_path / "work") and result.mask.is_relative_to(tmp_path / "work")
    assert Image.open(result.output).size == (256, 336) and Image.open(result.output).format == "JPEG"
    assert np.array_equal(np.asarray(Image.open(result.mask)), np.asarray(mask))
    assert f"in scratch mode with the weights in {tiny_weights}, mask: 1200 damaged pixels" in result.message
    out = tmp_path / "cli.jpg"
    code, output = _cli("restore", str(src), str(out), "--mask", str(result.mask), "--weights", str(tiny_weights), "--device", "cpu", "--no-faces")
    assert code == 0, output
    assert out.read_bytes() == result.output.read_bytes()
    from oldphoto.provenance import parse, read_xmp

    told = parse(read_xmp(result.output))  # the web app's output carries the same provenance
    assert told["original"] == "grandad.jpg" and told["mask"] == "given" and told["mask_file"] == "grandad-mask.png"
    # quality ignores the painted mask (and offers none to download)
    plain = session.restore(src, mask, choice="quality", faces=False)
    assert plain.mask is None and f"quality mode with the weights in {tiny_weights}, no mask used" in plain.message


def test_faces_off_says_why_in_plain_words(tiny_weights: Path, photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from oldphoto.api import Restorer
    from oldphoto.errors import UsageError
    from oldphoto.faces import faces_available

    if not faces_available():
        pytest.skip("the faces extra (dlib-bin, face-recognition-models) is not installed")
    assert faces_off_reason(Restorer(tiny_weights, device="cpu")) is None  # the tiny weights hold face256
    lite = faces_off_reason(Restorer(model="lite", device="cpu"))
    assert lite == "Faces are not enhanced: the built-in lite model has no face model (it needs the published weights)."
    bare = shutil.copytree(tiny_weights, tmp_path / "no-faces", ignore=shutil.ignore_patterns("face*"))
    assert faces_off_reason(Restorer(bare, device="cpu")) == "Faces are not enhanced: the weights folder no-faces has no face model."

    plain = tmp_path / "wall.png"
    Image.new("RGB", (64, 48), (150, 140, 120)).save(plain)
    found = Session(Restorer(tiny_weights, device="cpu"), tmp_path / "faces").restore(plain, None, choice="quality", faces=True)
    assert found.message.endswith(", no face found, " + found.message.rsplit(", ", 1)[1])

    # dlib cannot be imported (what a machine without the extra meets): the add-on is named, no pip command.
    monkeypatch.setitem(sys.modules, "dlib", None)
    session = Session(Restorer(tiny_weights, device="cpu"), tmp_path / "work")
    assert session.faces_off == NO_ADDON and "pip" not in NO_ADDON
    result = session.restore(photos / "old_a.png", None, choice="quality", faces=False)
    assert "face" not in result.message  # said once, beside the options, not again in every result
    with pytest.raises(UsageError, match="face add-on is not installed"):
        session.restore(photos / "old_a.png", None, choice="quality", faces=True)


def test_ui_without_gradio_is_one_line_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gradio" else real(name, *a))
    code, output = _cli("ui", "--no-browser")
    assert code == 1
    assert output.strip().splitlines() == ["error: the web app needs Gradio, which is not installed: pip install '.[ui]' in oldphoto's folder"]


def test_the_command_line_does_not_import_gradio() -> None:
    code = "import sys, oldphoto.cli; sys.exit('gradio' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}).returncode == 0


def test_session_keeps_a_16_bit_photo_16_bit(tiny_weights: Path, tmp_path: Path) -> None:
    """The web app's download of a 16-bit PNG is a 16-bit PNG, as the CLI writes it."""
    from oldphoto.api import Restorer
    from oldphoto.deepio import png16_bytes
    from oldphoto.imageio import read_image

    src = tmp_path / "scan.png"
    y, x = np.mgrid[0:40, 0:48]
    src.write_bytes(png16_bytes(np.stack([x * 1300, y * 1500, x * y * 30], axis=2).astype(np.uint16)))
    session = Session(Restorer(tiny_weights, device="cpu", faces=False), tmp_path / "work")
    result = session.restore(src, None, choice="quality", faces=False)
    restored = read_image(result.output)
    assert result.output.name == "scan-restored.png" and restored.deep is not None and restored.deep.shape == (40, 48, 3)
    out = tmp_path / "cli.png"
    code, output = _cli("restore", str(src), str(out), "--weights", str(tiny_weights), "--device", "cpu", "--mode", "quality", "--no-faces")
    assert code == 0, output
    assert np.array_equal(read_image(out).deep, restored.deep)
