"""The published release as the Hub repositories hold it, for download tests against ``tests.hub_server``.

``databuzzword/bringing-old-photos-back-to-life`` holds the whole published layout: the global
stage under ``Global/checkpoints/`` and the face stage under ``Face_Enhancement/checkpoints/``.
``leonelhs/zeroscratches`` holds the global files at its root.
"""

from __future__ import annotations

from pathlib import Path

PUBLISHED = "databuzzword/bringing-old-photos-back-to-life"
MIRROR = "leonelhs/zeroscratches"
OFFICIAL = "oldphoto/bringing-old-photos-back-to-life"


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


def needs(card: dict, prefix: str = "Global/checkpoints/") -> list[str]:
    """The release-repository paths a model card converts from, sorted."""
    paths = {s["source"] for s in card["networks"].values()}
    return sorted(p if p.startswith("Face_Enhancement/") else prefix + p for p in paths)
