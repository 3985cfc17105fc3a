"""The wheel's package list covers every package folder, the model cards ship inside it, the recipe does not."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CARDS = ROOT / "oldphoto" / "weights" / "cards"


def test_every_package_folder_is_listed_in_pyproject() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for p in (ROOT / "oldphoto").rglob("__init__.py")
        if "__pycache__" not in p.parts
    }
    assert found == listed


def test_model_cards_are_read_through_the_package() -> None:
    from oldphoto.weights.cards import card_names

    shipped = {p.stem for p in CARDS.glob("*.json")}
    assert set(card_names()) == shipped and {"quality", "scratch", "hr", "detector"} <= shipped


def test_the_wheel_holds_the_cards_and_not_the_maintainer_recipe(tmp_path: Path) -> None:
    pytest.importorskip("setuptools")
    src = tmp_path / "src"  # a copy, so the build's scratch folders never land in the checkout
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "oldphoto", src / "oldphoto", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "weights", src / "weights", ignore=shutil.ignore_patterns("__pycache__"))
    build = "import sys, setuptools.build_meta as b; print(b.build_wheel(sys.argv[1]))"
    done = subprocess.run(
        [sys.executable, "-c", build, str(tmp_path / "dist")], cwd=src, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    wheel = tmp_path / "dist" / done.stdout.strip().splitlines()[-1]
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"oldphoto/weights/cards/{p.name}" for p in CARDS.glob("*.json")} <= names
    assert "oldphoto/weights/load.py" in names
    assert not [n for n in names if n.endswith("publish.py") or n.startswith("weights/") or "model_cards" in n]
