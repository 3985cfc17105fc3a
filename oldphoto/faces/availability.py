"""Whether the faces extra is installed, and the one-line error that says what to install.

dlib comes from the prebuilt ``dlib-bin`` wheel and the 68-point landmark model from the
``face-recognition-models`` package. That package's own ``__init__`` imports ``pkg_resources``,
which current setuptools no longer ships, so the model file is located through the import
system (``find_spec``) without importing the package.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from types import ModuleType

from oldphoto.errors import OldPhotoError

INSTALL_HINT = "pip install '.[faces]' in oldphoto's folder (prebuilt dlib-bin and face-recognition-models; no compiler needed)"
LANDMARK_MODEL = "shape_predictor_68_face_landmarks.dat"
_MODEL_PACKAGE = "face_recognition_models"


class FacesUnavailable(OldPhotoError):
    """The face stage was asked for but the faces extra (dlib, the landmark model) is missing."""


def require_dlib() -> ModuleType:
    """Import and return dlib, or raise FacesUnavailable saying what to install."""
    try:
        return importlib.import_module("dlib")
    except ImportError as exc:
        message = f"face enhancement needs dlib, which cannot be imported ({exc}): {INSTALL_HINT}"
        raise FacesUnavailable(message) from None


def landmark_model_path() -> Path:
    """Path of the 68-point landmark model shipped by ``face-recognition-models``.

    Raises FacesUnavailable when the package or its model file is missing.
    """
    try:
        spec = importlib.util.find_spec(_MODEL_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / "models" / LANDMARK_MODEL
        if path.is_file():
            return path
    where = f"not found in {folders[0]}/models" if folders else "package face-recognition-models is not installed"
    raise FacesUnavailable(f"face enhancement needs the landmark model {LANDMARK_MODEL} ({where}): {INSTALL_HINT}")


def faces_available() -> bool:
    """True when dlib imports and the landmark model file is present (nothing is loaded)."""
    try:
        require_dlib()
        landmark_model_path()
    except FacesUnavailable:
        return False
    return True
