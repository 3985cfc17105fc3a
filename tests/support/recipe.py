"""The maintainer's recipe (``weights/publish.py``), which the wheel does not ship, loaded from the source tree."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

RECIPE = Path(__file__).resolve().parents[2] / "weights" / "publish.py"


def _load():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("oldphoto_publish_recipe", RECIPE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


_recipe = _load()
publish = _recipe.publish
publish_main = _recipe.main
