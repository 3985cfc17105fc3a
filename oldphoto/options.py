"""The choices the restore options accept, in one torch-free place for the API and the CLI."""

from __future__ import annotations

from oldphoto.cards import RESTORATION_MODES

#: ``auto`` picks a restoration mode per photo; ``none`` skips the global stage (faces only).
MODES = ("auto", *RESTORATION_MODES, "none")
#: ``default`` keeps the photo's exact size; ``published`` writes what the published code writes.
POSTPROCESS = ("default", "published")
