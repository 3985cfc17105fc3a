"""``oldphoto ui``: the page's plain functions, and the real page driven in headless Chromium.

The browser tests start ``oldphoto ui`` in a subprocess on a free loopback port with tiny
random weights (one app and one browser for the module) and drive it with Playwright in
Debian's ``chromium`` (Playwright's own browser download is not used). They are skipped, with
the reason, when gradio, playwright or /usr/bin/chromium is missing; CI installs all three.
The screenshot taken after a restore is written to ``$OLDPHOTO_TEST_ARTEFACTS`` (or pytest's
temporary folder) — random weights restore nothing, so it is a test artefact, never a README
picture.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from oldphoto.errors import ImageError
from oldphoto.inputs import load_mask
from oldphoto.ui.session import MASK_COLOUR, MASK_OPACITY, Session, mask_from_layers, mask_layer, open_photo

CHROMIUM = Path("/usr/bin/chromium")
# Software WebGL (SwiftShader) rather than --disable-gpu: with the GPU process disabled, the
# editor cannot draw a mask sent by the server into its layer, which is what is tested here.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--disable-quic",
    "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ROOT = Path(__file__).resolve().parent.parent


# --- bad files, as a family might drop them -------------------------------------------------


def _bad_files(folder: Path, photos: Path) -> dict[str, tuple[Path, str]]:
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


def _rotated_jpeg(photos: Path, path: Path) -> Path:
    """A JPEG stored on its side with EXIF orientation 6: upright it is scratched_c's 256×336."""
    upright = Image.open(photos / "scratched_c.png").convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6
    upright.transpose(Image.Transpose.ROTATE_90).save(path, quality=92, exif=exif.tobytes())
    return path


# --- the plain functions (no browser, no Gradio) ---------------------------------------------


@pytest.mark.parametrize("kind", ["text", "truncated", "bomb", "tiny"])
def test_bad_uploads_are_one_readable_line_naming_only_the_file(tmp_path: Path, photos: Path, kind: str) -> None:
    path, words = _bad_files(tmp_path / "deep" / "gradio-cache", photos)[kind]
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

    src = _rotated_jpeg(photos, tmp_path / "grandad.jpg")
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


def test_ui_without_gradio_is_one_line_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gradio" else real(name, *a))
    code, output = _cli("ui", "--no-browser")
    assert code == 1
    assert output.strip().splitlines() == ["error: the web app needs Gradio, which is not installed: pip install 'oldphoto[ui]'"]


def test_the_command_line_does_not_import_gradio() -> None:
    code = "import sys, oldphoto.cli; sys.exit('gradio' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}).returncode == 0


# --- the page in a real browser ----------------------------------------------------------------


def _browser_missing() -> str | None:
    for module, extra in (("gradio", "ui"), ("playwright", "test")):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install -e '.[{extra}]')"
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    return None


browser_test = pytest.mark.skipif(_browser_missing() is not None, reason=str(_browser_missing()))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _half_damaged_weights(tiny_weights: Path, photo: Path, dest: Path) -> Path:
    """The tiny weights with the detector's threshold at the median of its probabilities on ``photo``.

    Random detector weights give a nearly flat probability; at the card's threshold they mark
    everything or nothing, and a stroke painted on "everything" would prove nothing.
    """
    import torch

    from oldphoto.api import Restorer
    from oldphoto.detection import detect_probability, detection_input
    from oldphoto.inputs import load_photo

    shutil.copytree(tiny_weights, dest)
    meta, bundle = Restorer(dest, device="cpu").model("detector")
    x, size = detection_input(load_photo(photo).image.convert("RGB"), meta["pipeline"], "default")
    with torch.inference_mode():
        prob = detect_probability(bundle["unet"], x, size)
    card = json.loads((dest / "detector.json").read_text())
    card["pipeline"]["threshold"] = float(np.median(prob.numpy()))
    (dest / "detector.json").write_text(json.dumps(card))
    return dest


class App:
    """A running ``oldphoto ui`` and what it was started with."""

    def __init__(self, url: str, weights: Path, cwd: Path, tmp: Path, proc: subprocess.Popen[str]) -> None:
        self.url, self.weights, self.cwd, self.tmp, self.proc = url, weights, cwd, tmp, proc


@pytest.fixture(scope="module")
def app(tiny_weights: Path, photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    base = tmp_path_factory.mktemp("ui-app")
    photo = _rotated_jpeg(photos, base / "grandad.jpg")
    weights = _half_damaged_weights(tiny_weights, photo, base / "weights")
    cwd, tmp = base / "cwd", base / "tmp"
    cwd.mkdir()
    tmp.mkdir()
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp), "OMP_NUM_THREADS": "2", "COLUMNS": "200"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "oldphoto", "ui", "--port", str(port), "--weights", str(weights), "--device", "cpu", "--no-browser"],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"oldphoto ui did not start:\n{proc.communicate()[0]}")
            time.sleep(0.3)
    started = App(url, weights, cwd, tmp, proc)
    yield started
    proc.terminate()
    log = proc.communicate(timeout=30)[0]
    assert proc.returncode is not None
    # Nothing outside the app's temporary folder, and that folder is gone once it stops.
    assert list(cwd.iterdir()) == [], log
    assert list(tmp.iterdir()) == [], log


@pytest.fixture(scope="module")
def page(app: App) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1100}, accept_downloads=True)
        tab = context.new_page()
        tab.set_default_timeout(90_000)
        outside: list[str] = []
        tab.on("request", lambda r: outside.append(r.url) if r.url.split("/")[2:3] != [app.url.split("/")[2]] and r.url.startswith("http") else None)
        tab.goto(app.url)
        tab.wait_for_selector("#upload input[type=file]", state="attached")
        yield tab
        # The page never reaches beyond this computer (fonts, analytics, version checks).
        assert outside == []
        browser.close()


def _status(page: Any, *words: str, before: str | None = None) -> str:
    """Wait until the status line holds one of ``words`` (and differs from ``before``); return it."""
    page.wait_for_function(
        """([words, before]) => {
            const text = document.querySelector('#status').innerText;
            return text !== before && words.some(w => text.includes(w));
        }""",
        arg=[list(words), before],
    )
    return str(page.locator("#status").inner_text())


def _upload(page: Any, *paths: Path) -> str:
    before = page.locator("#status").inner_text()
    page.locator("#upload input[type=file]").set_input_files([str(p) for p in paths])
    return _status(page, "Working on", "Problem", before=before)


def _artefacts(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("OLDPHOTO_TEST_ARTEFACTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@browser_test
def test_upload_detect_paint_restore_download(app: App, page: Any, photos: Path, tmp_path: Path) -> None:
    from oldphoto.api import Restorer

    src = _rotated_jpeg(photos, tmp_path / "grandad.jpg")
    assert "1 photo added: grandad.jpg. Working on grandad.jpg." in _upload(page, src)
    page.click("#detect")
    assert "Found scratches on" in _status(page, "Found scratches", "Problem")
    detected = np.asarray(Restorer(app.weights, device="cpu").detect(src)) > 0
    assert 0.2 < detected.mean() < 0.8

    # One stroke across the middle of the photo, in a few moves (software WebGL is slow).
    box = page.locator("#editor canvas").first.bounding_box()
    y = box["y"] + box["height"] * 0.5
    page.mouse.move(box["x"] + box["width"] * 0.3, y)
    page.mouse.down()
    for k in range(1, 6):
        page.mouse.move(box["x"] + box["width"] * (0.3 + 0.08 * k), y)
    page.mouse.up()
    page.wait_for_timeout(500)

    page.click("#restore")
    status = _status(page, "Restored", "Problem")
    assert "Restored grandad.jpg (256×336) in scratch mode" in status
    page.locator("#compare img").first.wait_for()
    shot = _artefacts(tmp_path) / "ui-after-restore.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000

    downloads = {}
    for button in ("#download-photo", "#download-mask"):
        with page.expect_download() as caught:
            page.click(button)
        downloads[button] = tmp_path / caught.value.suggested_filename
        caught.value.save_as(downloads[button])
    photo, mask_file = downloads["#download-photo"], downloads["#download-mask"]
    assert (photo.name, mask_file.name) == ("grandad-restored.jpg", "grandad-mask.png")
    with Image.open(photo) as restored:
        assert restored.size == (256, 336) and restored.format == "JPEG"

    # The mask the app used is the file it offers: the status counts its pixels...
    used = np.asarray(Image.open(mask_file))
    assert used.shape == (336, 256) and set(np.unique(used)) <= {0, 255}
    assert f"mask: {int((used > 0).sum())} damaged pixels" in status
    # ...it keeps what the detector found, and adds the painted stroke: a band across the middle.
    used = used > 0
    assert (used >= detected).all()
    added = np.argwhere(used & ~detected)
    assert len(added) > 100
    rows, cols = added[:, 0], added[:, 1]
    assert rows.max() - rows.min() < 40 and 140 < rows.mean() < 200
    assert cols.max() - cols.min() > 60

    # ...and restoring with it through the CLI gives the same bytes.
    out = tmp_path / "cli.jpg"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "2"}
    run = subprocess.run(
        [sys.executable, "-m", "oldphoto", "restore", str(src), str(out), "--mask", str(mask_file), "--weights", str(app.weights), "--device", "cpu"],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )
    assert run.returncode == 0, run.stderr
    assert out.read_bytes() == photo.read_bytes()


@browser_test
def test_bad_uploads_are_shown_and_the_page_keeps_working(app: App, page: Any, photos: Path, tmp_path: Path) -> None:
    bad = _bad_files(tmp_path / "bad", photos)
    status = _upload(page, *(path for path, _ in bad.values()))
    for _, words in bad.values():
        assert words in status
    assert str(tmp_path) not in status and "Traceback" not in status

    assert "1 photo added: old_a.png. Working on old_a.png." in _upload(page, photos / "old_a.png")
    page.locator("#choice label", has_text="quality").click()
    page.click("#restore")
    assert "Restored old_a.png (298×450) in quality mode" in _status(page, "Restored", "Problem")
    with page.expect_download() as caught:
        page.click("#download-photo")
    saved = tmp_path / caught.value.suggested_filename
    caught.value.save_as(saved)
    assert saved.name == "old_a-restored.png" and Image.open(saved).size == (298, 450)


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
