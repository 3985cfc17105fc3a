"""Take the README's screenshot of the web app: a real old photo restored by the bundled lite model.

Starts ``oldphoto ui --model lite`` on a free loopback port, drives Debian's ``chromium``
with Playwright (upload, quality, Restore), waits for the before/after slider and saves the
page. Needs the ui and test extras and ``/usr/bin/chromium``. From the repository root::

    python docs/make_ui_screenshot.py docs/examples/old.png --out docs/images/ui-lite.jpg
"""

from __future__ import annotations

import argparse
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

ARGS = ["--headless", "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("photo", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    port = _free_port()
    app = subprocess.Popen(
        [sys.executable, "-m", "oldphoto", "ui", "--model", "lite", "--no-browser", "--port", str(port), "--device", "cpu"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(120):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(120_000)
            page.goto(url)
            page.wait_for_selector("#upload input[type=file]", state="attached")
            page.locator("#upload input[type=file]").set_input_files([str(args.photo)])
            page.wait_for_function("() => document.querySelector('#status').innerText.includes('Working on')")
            page.locator("#choice label", has_text="quality").click()
            page.click("#restore")
            page.wait_for_function("() => document.querySelector('#status').innerText.includes('Restored')")
            page.locator("#compare img").first.wait_for()
            page.wait_for_timeout(1500)
            status = page.locator("#status").inner_text()
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out), full_page=True)
            browser.close()
        print(re.sub(r"\s+", " ", status))
        print(f"{args.out}: {args.out.stat().st_size / 1e3:.0f} kB")
    finally:
        app.terminate()
        app.wait(timeout=30)


if __name__ == "__main__":
    main()
