"""The published release as the Hub repositories hold it, for download tests against ``tests.hub_server``.

``databuzzword/bringing-old-photos-back-to-life`` holds the whole published layout: the global
stage under ``Global/checkpoints/`` and the face stage under ``Face_Enhancement/checkpoints/``.
``leonelhs/zeroscratches`` holds the global files at its root. ``shaitanzx/FooocusExtend`` holds
the whole layout under ``old_photo/``: the global stage under ``old_photo/global/checkpoints/``,
the face stage under ``old_photo/face/checkpoints/``, and the landmark model beside them.
"""

from __future__ import annotations

from pathlib import Path

PUBLISHED = "databuzzword/bringing-old-photos-back-to-life"
MIRROR = "leonelhs/zeroscratches"
OFFICIAL = "oldphoto/bringing-old-photos-back-to-life"
EXTEND = "shaitanzx/FooocusExtend"
#: Where EXTEND keeps the release's ``Global/checkpoints`` and ``Face_Enhancement/checkpoints``.
EXTEND_GLOBAL = "old_photo/global/checkpoints"
EXTEND_FACE = "old_photo/face/checkpoints"
#: A stand-in for the dlib landmark model EXTEND also holds (oldphoto never downloads it).
LANDMARKS = ("old_photo/shape_predictor_68_face_landmarks.dat", b"dlib landmark model stand-in")


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by its posix path relative to ``root``."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def published_tree(root: Path) -> dict[str, bytes]:
    """A published-layout folder (``restoration/``, ``detection/``, ``Face_Enhancement/``) as the release repository lays it out."""
    return {
        rel if rel.startswith("Face_Enhancement/") else f"Global/checkpoints/{rel}": data
        for rel, data in tree(root).items()
    }


def mirror_tree(root: Path) -> dict[str, bytes]:
    """The same files as the zeroscratches mirror lays them out (global stage only, at its root)."""
    return {rel: data for rel, data in tree(root).items() if not rel.startswith("Face_Enhancement/")}


def extend_tree(root: Path) -> dict[str, bytes]:
    """The same files as ``shaitanzx/FooocusExtend`` lays them out (everything under ``old_photo/``)."""
    face = "Face_Enhancement/checkpoints/"
    laid = {
        f"{EXTEND_FACE}/{rel.removeprefix(face)}" if rel.startswith(face) else f"{EXTEND_GLOBAL}/{rel}": data
        for rel, data in tree(root).items()
    }
    return {**laid, LANDMARKS[0]: LANDMARKS[1]}


def in_extend(release_path: str) -> str:
    """Where ``shaitanzx/FooocusExtend`` keeps the file the release repository holds at ``release_path``."""
    for release, there in (("Global/checkpoints/", EXTEND_GLOBAL), ("Face_Enhancement/checkpoints/", EXTEND_FACE)):
        if release_path.startswith(release):
            return f"{there}/{release_path.removeprefix(release)}"
    raise ValueError(release_path)


def needs(card: dict, prefix: str = "Global/checkpoints/") -> list[str]:
    """The release-repository paths a model card converts from, sorted."""
    paths = {s["source"] for s in card["networks"].values()}
    return sorted(p if p.startswith("Face_Enhancement/") else prefix + p for p in paths)
