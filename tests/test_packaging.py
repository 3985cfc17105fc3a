"""The wheel's package list covers every package folder, and the model cards ship inside it."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_package_folder_is_listed_in_pyproject() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for p in (ROOT / "oldphoto").rglob("__init__.py")
        if "__pycache__" not in p.parts
    }
    assert found | {"oldphoto.model_cards"} == listed


def test_model_cards_are_read_through_the_package() -> None:
    from oldphoto.cards import card_names

    shipped = {p.stem for p in (ROOT / "weights").glob("*.json")}
    assert set(card_names()) == shipped and {"quality", "scratch", "hr", "detector"} <= shipped
