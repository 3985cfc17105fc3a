"""Model cards: what each model is, which published files it comes from, where to fetch it.

The cards are the ``*.json`` files beside this module, shipped in the wheel as package data,
so the code and the published record cannot drift apart.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

from oldphoto.errors import UsageError

#: Restoration modes, in the order ``weights list`` shows them; each has a card of its name.
RESTORATION_MODES = ("quality", "scratch", "hr")


@cache
def card_names() -> tuple[str, ...]:
    """Names of every model card shipped with the package."""
    files = resources.files(__name__)
    return tuple(sorted(p.name[:-5] for p in files.iterdir() if p.name.endswith(".json")))


@cache
def _load(name: str) -> str:
    path = resources.files(__name__).joinpath(f"{name}.json")
    if not path.is_file():
        known = ", ".join(card_names())
        raise UsageError(f"unknown model {name!r} (known: {known})")
    return path.read_text(encoding="utf-8")


def load_card(name: str) -> dict[str, Any]:
    """Return a fresh copy of the card for model ``name`` (callers may modify it)."""
    card: dict[str, Any] = json.loads(_load(name))
    return card


def card_for(name: str, card: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A copy of ``card`` when one is given (tests, overrides), else the shipped card of ``name``."""
    return dict(card) if card is not None else load_card(name)
