"""How big the review report of a large run is, and how long Chromium takes to show it.

Builds the report of a run of ``--photos`` small generated photos without running the
networks: each photo's thumbnails are written by the same :func:`oldphoto.batch.report.thumbnails`
a run uses, its record is the kind a run produces (one in 200 failed, one in 10 with a mask,
one in 50 tiled), and :class:`oldphoto.batch.report.Report` writes the page and the manifest.
Then headless Chromium (``/usr/bin/chromium`` through Playwright) opens the page and the
script prints the page's size, the thumbnails', the time to the page's first paint and to
every row being built, and the time one filter takes. Example::

    python benchmarks/report_scale.py --photos 20000
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from oldphoto.batch.report import Report, thumbnails
from oldphoto.batch.running import Record


def build(folder: Path, photos: int) -> Path:
    """Write the report of ``photos`` generated photos into ``folder``; return the page."""
    report = folder / "report.html"
    review = Report(report, command=["oldphoto", "restore", "scans/", "out/", "--report", str(report)],
                    settings={"mode": "auto"}, requested_model="auto")
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:48, 0:64]
    started = time.perf_counter()
    for i in range(photos):
        output = folder / "out" / f"{i // 1000:03d}" / f"scan{i:05d}.tif"
        record = Record(input=str(folder / "scans" / output.parent.name / output.name), output=str(output),
                        status="restored", mode="quality", model="published", size=[3000, 2000], seconds=2.5)
        if i % 200 == 7:
            record.status, record.error, record.mode, record.model = "failed", f"{record.input}: cannot read image", None, None
        else:
            base = np.stack([(x * 4 + i) % 256, (y * 5 + i // 7) % 256, rng.integers(0, 256, x.shape)], axis=2)
            before = Image.fromarray(base.astype(np.uint8))
            mask = None
            if i % 10 == 3:
                mask = Image.fromarray(((x + y * (i % 7)) % 17 < 2).astype(np.uint8) * 255)
                record.mode = "scratch"
            record.review = thumbnails(folder / "report_files", output, before, before, mask)
            record.review["tiled"] = i % 50 == 0
            record.sha256 = "0" * 64
        review.add(record)
    review.close()
    print(f"built {photos} entries and their thumbnails in {time.perf_counter() - started:.1f} s")
    return report


def rerender(report: Path) -> None:
    """Write a kept report's page again from its manifest (to measure a changed page without new thumbnails)."""
    manifest = json.loads(report.with_suffix(".json").read_text(encoding="utf-8"))
    review = Report(report, command=manifest["command"], settings=manifest["settings"], requested_model="auto")
    review.entries = {e["output"]: e for e in manifest["photos"]}
    review.close()


def open_in_chromium(report: Path) -> None:
    """Print Chromium's times to show the page and to apply one filter."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--headless", "--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        start = time.perf_counter()
        page.goto(report.as_uri(), wait_until="commit")
        page.wait_for_selector("body[data-ready='1']", timeout=300_000)
        ready = time.perf_counter() - start
        paint = page.evaluate("performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? -1")
        marks = page.evaluate("[performance.getEntriesByName('rows-shown')[0].startTime, "
                              "performance.getEntriesByType('navigation')[0].loadEventEnd]")
        rows = page.evaluate("data.rows.length")
        in_page = page.evaluate("document.querySelectorAll('.row').length")
        # Failures come first and have no thumbnails: scroll to the first restored photos and time their thumbnails.
        start = time.perf_counter()
        page.evaluate("scrollTo(0, list.offsetTop + data.rows.filter(r => r.status === 'failed').length * ROW)")
        shown = ("(() => { const shown = [...document.images].filter(i => { const r = i.getBoundingClientRect();"
                 " return r.bottom > 0 && r.top < innerHeight; }); return shown.length > 0 && shown.every(i => i.complete); })()")
        while not page.evaluate(shown):  # polled: the page's CSP forbids the eval wait_for_function needs
            time.sleep(0.02)
        thumbs = time.perf_counter() - start
        filtered = page.evaluate("(() => { const t = performance.now(); const box = document.querySelector(\"#filters input[value='failed']\");"
                                 " box.checked = true; box.dispatchEvent(new Event('change', {bubbles: true}));"
                                 " document.body.offsetHeight; return performance.now() - t; })()") / 1000
        shown = page.evaluate("shown.length")
        heap = page.evaluate("performance.memory ? performance.memory.usedJSHeapSize / 1e6 : -1")
        browser.close()
    images = [u for u in requests if u.endswith(".jpg")]
    print(f"page clock: rows on screen {marks[0] / 1000:.2f} s, load event {marks[1] / 1000:.2f} s after navigation started "
          f"({in_page} of {rows} rows in the page at a time)")
    print(f"chromium (seen from playwright): ready in {ready:.2f} s (first paint at {paint / 1000:.2f} s); "
          f"scrolled to the first restored photos, their thumbnails in {thumbs:.2f} s; {len(images)} thumbnails loaded "
          f"in all (lazy); JS heap {heap:.0f} MB")
    print(f"filter 'failed': {shown} rows shown in {filtered * 1000:.0f} ms")
    outside = [u for u in requests if not u.startswith("file://")]
    print(f"requests beyond local files: {len(outside)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=20_000)
    parser.add_argument("--keep", type=Path, help="build the report in this folder (kept, and reused when there) instead of a temporary one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        report = folder / "report.html"
        if report.exists():
            rerender(report)
        else:
            report = build(folder, args.photos)
        thumbs = list((folder / "report_files").iterdir())
        print(f"page {report.stat().st_size / 1e6:.2f} MB, manifest {report.with_suffix('.json').stat().st_size / 1e6:.2f} MB, "
              f"{len(thumbs)} thumbnails {sum(t.stat().st_size for t in thumbs) / 1e6:.1f} MB")
        open_in_chromium(report)


if __name__ == "__main__":
    main()
