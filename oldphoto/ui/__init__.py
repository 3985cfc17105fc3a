"""``oldphoto ui``: the whole tool as a web page on this computer (the ``ui`` extra, Gradio).

:mod:`oldphoto.ui.session` holds what the page does as plain functions over the library's own
paths (no Gradio); :mod:`oldphoto.ui.app` builds the page; :func:`serve` runs it. Gradio is
imported only by :func:`serve` and :mod:`oldphoto.ui.app`, so the rest of oldphoto never pays
for it.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any

from oldphoto.errors import OldPhotoError
from oldphoto.imageio import DEFAULT_MAX_PIXELS

#: What to install when Gradio is missing.
INSTALL_HINT = "pip install '.[ui]' in oldphoto's folder"


class UiUnavailable(OldPhotoError):
    """``oldphoto ui`` was asked for but the ui extra (Gradio) is not installed."""


def require_gradio() -> None:
    """Raise :class:`UiUnavailable` naming the extra when Gradio is not installed."""
    import importlib.util

    if importlib.util.find_spec("gradio") is None:
        raise UiUnavailable(f"the web app needs Gradio, which is not installed: {INSTALL_HINT}")


def _quiet_gradio(folder: Path) -> None:
    """Before Gradio is imported: no analytics or version checks, uploads kept in our temporary folder."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    os.environ["GRADIO_TEMP_DIR"] = str(folder / "uploads")


def serve(
    restorer: Any,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    share: bool = False,
    open_browser: bool = True,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> None:
    """Serve the page until interrupted; every file it writes lives in one temporary folder, removed at exit."""
    require_gradio()
    folder = Path(tempfile.mkdtemp(prefix="oldphoto-ui-"))
    _quiet_gradio(folder)
    # A plain `kill` ends the server like Ctrl-C does, so the temporary folder is removed.
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        import gradio as gr

        from oldphoto.ui.app import CSS, build
        from oldphoto.ui.session import Session

        session = Session(restorer, folder / "work", max_pixels=max_pixels)
        faces_default = bool(restorer.faces_enabled("quality")) if hasattr(restorer, "faces_enabled") else False
        page = build(session, faces_default=faces_default)
        page.queue(default_concurrency_limit=1)
        # System fonts only: the default theme would fetch its font from Google.
        theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
        page.launch(
            server_name=host,
            server_port=port,
            share=share,
            inbrowser=open_browser,
            allowed_paths=[str(folder)],
            ssr_mode=False,
            mcp_server=False,
            pwa=False,
            footer_links=[],
            theme=theme,
            css=CSS,
            quiet=True,
            prevent_thread_lock=True,
        )
        print(f"oldphoto ui: open {page.local_url} in your browser (Ctrl-C to stop)", flush=True)
        if share and page.share_url:
            print(f"oldphoto ui: public link {page.share_url} (anyone with it can use this computer's oldphoto)", flush=True)
        page.block_thread()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        shutil.rmtree(folder, ignore_errors=True)
