"""Where a model's weights can come from: the card's download sources, in the order they are tried.

A source is a Hugging Face Hub repository of one of two kinds. ``oldphoto``: the project's own
converted safetensors (``NAME.safetensors`` + ``NAME.json``). ``published``: a repository laid
out like the published release (``Global/checkpoints/...``, ``Face_Enhancement/checkpoints/...``,
or the same folders under other names, see :func:`in_source`), whose ``.pth`` files are
converted once by the importer. Pure data: nothing here touches the network.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from oldphoto.errors import WeightsError

#: The project's own Hub repository of converted safetensors (tried once a card says it is published).
DEFAULT_REPO = "oldphoto/bringing-old-photos-back-to-life"
#: The Hub repository holding the complete published release (``Global/``, ``Face_Enhancement/``).
PUBLISHED_REPO = "databuzzword/bringing-old-photos-back-to-life"
KINDS = ("oldphoto", "published")
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")


def _check_kinds(card: Mapping[str, Any], sources: list[dict[str, Any]]) -> None:
    for s in sources:
        if s.get("kind") not in KINDS:
            raise WeightsError(f"model card {card.get('name')!r}: source kind {s.get('kind')!r} is not one of {KINDS}")


def usable(source: Mapping[str, Any]) -> bool:
    """A source worth trying: our own repository only once the card records it as published."""
    return source.get("kind") != "oldphoto" or bool(source.get("published")) or bool(source.get("overridden"))


def effective_sources(card: Mapping[str, Any], repo: str | None = None, revision: str | None = None) -> list[dict[str, Any]]:
    """The sources to try for ``card``, in order.

    Without overrides: the card's own repository when it is published, then the published-layout
    repositories. ``repo`` (or ``OLDPHOTO_REPO``) names a repository to try first: one of the
    card's published-layout sources is moved to the front, any other repository is taken as a
    repository of converted weights (a fork, a private mirror) and replaces the card's own. A
    replaced repository carries no expected sha256: what it serves is reported as unverified.
    ``revision`` (a branch, tag or commit) applies to the first source tried.
    """
    sources = [dict(s) for s in card.get("sources", [])]
    _check_kinds(card, sources)
    repo = repo or os.environ.get("OLDPHOTO_REPO") or None
    if repo:
        same = next((s for s in sources if s.get("repo") == repo), None)
        if same is not None:
            sources.remove(same)
            first = dict(same, overridden=True)
        else:
            ours = next((s for s in sources if s.get("kind") == "oldphoto"), None)
            if ours is not None:
                sources.remove(ours)
            first = {"kind": "oldphoto", "repo": repo, "revision": None, "files": {}, "overridden": True}
        sources.insert(0, first)
    sources = [s for s in sources if usable(s)]
    if revision and sources and revision != sources[0].get("revision"):
        sources[0] = dict(sources[0], revision=revision, files={}, overridden=True)
    return sources


def required_files(name: str, card: Mapping[str, Any], source: Mapping[str, Any]) -> list[str]:
    """Files (repo paths below the source's subfolder) that model ``name`` needs from ``source``."""
    if source.get("kind") == "oldphoto":
        return [f"{name}.safetensors", f"{name}.json"]
    return sorted({in_source(spec["source"], source) for spec in card["networks"].values()})


def in_source(card_path: str, source: Mapping[str, Any]) -> str:
    """Where the card's published file ``card_path`` lies below a published source's subfolder.

    Card paths of the global stage start below ``Global/checkpoints``; those of the face stage
    carry their ``Face_Enhancement/checkpoints/`` prefix, which the source absorbs when its
    subfolder is that release folder, or when it names it as ``release_folder`` (a repository
    that keeps the release's face folder elsewhere, e.g. ``old_photo/face/checkpoints``).
    """
    folder = (source.get("release_folder") or source.get("subfolder") or "").strip("/")
    return card_path[len(folder) + 1:] if folder and card_path.startswith(folder + "/") else card_path


def card_path_of(name: str, card: Mapping[str, Any], source: Mapping[str, Any], filename: str) -> str:
    """The card's path of the published file that ``source`` holds as ``filename``."""
    for spec in card["networks"].values():
        if in_source(spec["source"], source) == filename:
            return str(spec["source"])
    raise WeightsError(f"model card {name!r}: no network is converted from {filename}")


def repo_path(source: Mapping[str, Any], filename: str) -> str:
    """The file's full path in the repository (subfolder included)."""
    sub = (source.get("subfolder") or "").strip("/")
    return f"{sub}/{filename}" if sub else filename


def where(source: Mapping[str, Any], commit: str | None = None) -> str:
    """``repo`` or ``repo@revision`` for messages."""
    rev = commit or source.get("revision")
    return f"{source['repo']}@{rev}" if rev else str(source["repo"])


def key(source: Mapping[str, Any]) -> str:
    """The cache folder name of one source (kind, repository, revision, subfolder)."""
    rev = source.get("revision") or "main"
    sub = (source.get("subfolder") or "").strip("/")
    raw = f"{source['kind']}--{source['repo']}@{rev}" + (f"--{sub}" if sub else "")
    return raw.replace("/", "--")


def expected_sha256(source: Mapping[str, Any], filename: str) -> str | None:
    """The sha256 the card pins for ``filename`` of ``source``, or None (never guessed)."""
    info = (source.get("files") or {}).get(filename) or {}
    sha = info.get("sha256")
    return sha.lower() if isinstance(sha, str) and sha else None


def pinned(source: Mapping[str, Any], files: list[str]) -> bool:
    """True when the card pins a sha256 for every one of ``files`` (else they are trusted on first use)."""
    return bool(files) and all(expected_sha256(source, f) is not None for f in files)


def describe(source: Mapping[str, Any]) -> str:
    """One short line for listings: ``repo (kind)``, with the subfolder of a published layout."""
    sub = (source.get("subfolder") or "").strip("/")
    return f"{source['repo']}" + (f"/{sub}" if sub else "") + f" ({source['kind']})"
