"""The review report and run manifest of a folder run (``--report``), opened in headless Chromium."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from oldphoto.cli import app
from oldphoto.fsutil import sha256_file

CHROMIUM = Path("/usr/bin/chromium")


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "400"})
    return result.exit_code, result.output


def _folder(root: Path) -> tuple[Path, Path]:
    """Three photos, a corrupt one, and a mask folder marking a quarter of b.png as damaged."""
    rng = np.random.default_rng(9)
    src, masks = root / "scans", root / "masks"
    src.mkdir(parents=True)
    masks.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(src / name)
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    mask = np.zeros((40, 48), np.uint8)
    mask[:, :12] = 255
    Image.fromarray(mask).save(masks / "b.png")
    return src, masks


def _manifest(report: Path) -> dict[str, Any]:
    return json.loads(report.with_suffix(".json").read_text(encoding="utf-8"))


def test_a_folder_run_writes_a_report_with_failures_first_and_a_manifest(tiny_weights: Path, tmp_path: Path) -> None:
    src, masks = _folder(tmp_path)
    out, report = tmp_path / "out", tmp_path / "review" / "report.html"
    code, output = _run("restore", str(src), str(out), "--mask", str(masks), "--weights", str(tiny_weights), "--device", "cpu",
                        "--no-faces", "--report", str(report))
    assert code == 1, output  # one photo failed
    manifest = _manifest(report)
    assert manifest["command"][:2] == ["oldphoto", "restore"] and manifest["finished"]
    assert manifest["versions"]["oldphoto"] and manifest["versions"]["torch"]
    assert manifest["weights"] == {n: json.loads((tiny_weights / f"{n}.json").read_text())["weights_sha256"]
                                   for n in ("quality", "scratch")}
    assert manifest["settings"]["mode"] == "auto" and manifest["settings"]["weights"] == str(tiny_weights)
    photos = {Path(p["input"]).name: p for p in manifest["photos"]}
    assert photos["broken.png"]["status"] == "failed" and "broken.png" in photos["broken.png"]["error"]
    for name in ("a.png", "b.png", "c.png"):
        assert photos[name]["sha256"] == sha256_file(out / name)
    assert photos["b.png"]["review"]["mask_share"] == 0.25 and photos["b.png"]["mode"] == "scratch"
    for thumb in photos["b.png"]["review"]["thumbs"].values():
        with Image.open(report.parent / "report_files" / thumb) as image:
            assert image.size == (48, 40)  # at most 160 pixels, never enlarged
    page = report.read_text(encoding="utf-8")
    assert "http://" not in page and "https://" not in page  # nothing to fetch from anywhere


def _browser_missing() -> str | None:
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e .[test])"
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    return None


@pytest.mark.skipif(_browser_missing() is not None, reason=str(_browser_missing()))
def test_the_report_opens_in_chromium_with_only_local_files_and_its_filters_work(tiny_weights: Path, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    src, masks = _folder(tmp_path)
    out, report = tmp_path / "out", tmp_path / "out" / "report.html"
    code, output = _run("restore", str(src), str(out), "--mask", str(masks), "--weights", str(tiny_weights), "--device", "cpu",
                        "--no-faces", "--report", str(report))
    assert code == 1, output
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox", "--disable-gpu"])
        tab = browser.new_page(viewport={"width": 1200, "height": 2000})
        requests: list[str] = []
        tab.on("request", lambda r: requests.append(r.url))
        tab.goto(report.as_uri())
        tab.wait_for_selector("body[data-ready='1']")
        tab.wait_for_function("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
        rows = tab.locator(".row")
        assert rows.count() == 4
        assert "broken.png" in rows.nth(0).inner_text() and "failed" in rows.nth(0).get_attribute("class")
        assert tab.locator("img").count() == 3 * 2 + 1  # before and after of three photos, one mask overlay
        visible = lambda: [r.inner_text().split("\n")[0] for r in rows.all() if r.is_visible()]  # noqa: E731
        tab.check("#filters input[value='large-mask']")
        assert visible() == [str(src / "b.png")]
        tab.check("#filters input[value='failed']")
        assert visible() == [str(src / "broken.png"), str(src / "b.png")]
        tab.check("#all")
        assert len(visible()) == 4
        href = rows.nth(1).locator("a").get_attribute("href")
        assert (report.parent / href).resolve().is_file()
        browser.close()
    local = report.parent.resolve().as_uri()
    assert requests and all(url.startswith(local) for url in requests), requests


def test_an_interrupted_run_has_a_report_and_the_resumed_run_completes_it(
    tiny_weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from oldphoto.api import Restorer

    src, _ = _folder(tmp_path)
    (src / "broken.png").unlink()
    out, report = tmp_path / "out", tmp_path / "report.html"
    real = Restorer.restore_photo
    calls: list[int] = []

    def interrupt_second(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Restorer, "restore_photo", interrupt_second)
    args = ("restore", str(src), str(out), "--weights", str(tiny_weights), "--device", "cpu", "--no-faces", "--report", str(report))
    code, output = _run(*args)
    assert code == 130, output
    manifest = _manifest(report)
    assert manifest["finished"] is None and [p["status"] for p in manifest["photos"]] == ["restored"]
    assert "interrupted: re-run" in report.read_text(encoding="utf-8")
    monkeypatch.setattr(Restorer, "restore_photo", real)
    code, output = _run(*args)
    assert code == 0, output
    manifest = _manifest(report)
    assert manifest["finished"] and [p["status"] for p in manifest["photos"]] == ["restored"] * 3
    assert manifest["photos"][0].get("earlier_run") and manifest["photos"][0]["sha256"] == sha256_file(out / "a.png")
    assert "interrupted: re-run" not in report.read_text(encoding="utf-8")


def test_a_report_inside_the_photo_folder_is_refused(tiny_weights: Path, tmp_path: Path) -> None:
    src, _ = _folder(tmp_path)
    code, output = _run("restore", str(src), str(tmp_path / "out"), "--weights", str(tiny_weights), "--report", str(src / "r.html"))
    assert code == 2 and "photo folder" in output, output
