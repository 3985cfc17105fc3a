"""``oldphoto ui``: the web app on this computer. Gradio is imported only when it runs."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from oldphoto.cli.common import fail, say


def ui(
    port: Optional[int] = typer.Option(None, "--port", min=1, max=65535, help="Port to serve on (default: the first free one from 7860)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on. The default serves this computer only; 0.0.0.0 serves your network."),
    model: str = typer.Option("auto", "--model", help="auto (published weights when reachable, else the bundled lite model), published or lite."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Folder of oldphoto checkpoints (from 'weights import-official'); default: download."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    precision: str = typer.Option("auto", "--precision", help="auto, fp32, bf16 or fp16."),
    browser: bool = typer.Option(True, "--browser/--no-browser", help="Open the page in the web browser."),
    share: bool = typer.Option(False, "--share", help="Also make a public gradio.live link (off by default: nothing leaves this computer)."),
    max_pixels: Optional[int] = typer.Option(
        None, "--max-pixels", min=0, help="Refuse photos larger than this many pixels (decompression-bomb guard). Default 250000000; 0 for no limit."
    ),
) -> None:
    """Restore photos in your web browser: upload, fix the scratch mask with a brush, compare, download.

    Needs the ui extra (Gradio). Stop it with Ctrl-C.
    """
    from oldphoto.errors import OldPhotoError, UsageError
    from oldphoto.imageio import DEFAULT_MAX_PIXELS
    from oldphoto.ui import require_gradio, serve

    try:
        require_gradio()
        from oldphoto.api import Restorer

        restorer = Restorer(weights, device=device, precision=precision, model=model)
        restorer.choose()  # once, before the page opens: the page then says which model restored
        for notice in restorer.notices():
            say("yellow", "note", notice)
    except OldPhotoError as exc:
        fail(str(exc), code=2 if isinstance(exc, UsageError) else 1)
    serve(
        restorer,
        host=host,
        port=port,
        share=share,
        open_browser=browser,
        max_pixels=DEFAULT_MAX_PIXELS if max_pixels is None else (max_pixels or None),
    )
