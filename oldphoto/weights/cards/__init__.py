"""Model cards: what each model is, which published files it comes from, where to fetch it.

The cards live in the repository's top-level ``weights/`` folder, which the wheel ships as
the ``oldphoto.model_cards`` package, so the code and the published record cannot drift apart.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from oldphoto.errors import UsageError

#: Restoration modes, in the order ``weights list`` shows them; each has a card of its name.
RESTORATION_MODES = ("quality", "scratch", "hr")


@cache
def card_names() -> tuple[str, ...]:
    """Names of every model card shipped with the package."""
    files = resources.files("oldphoto.model_cards")
    return tuple(sorted(p.name[:-5] for p in files.iterdir() if p.name.endswith(".json")))


@cache
def _load(name: str) -> str:
    path = resources.files("oldphoto.model_cards").joinpath(f"{name}.json")
    if not path.is_file():
        known = ", ".join(card_names())
        raise UsageError(f"unknown model {name!r} (known: {known})")
    return path.read_text(encoding="utf-8")


def load_card(name: str) -> dict[str, Any]:
    """Return a fresh copy of the card for model ``name`` (callers may modify it)."""
    card: dict[str, Any] = json.loads(_load(name))
    return card
