"""Download one model: try the card's sources in order, verify what arrives, convert it, cache it.

A source of kind ``oldphoto`` holds our safetensors, which are linked into the cache; one of
kind ``published`` holds the published ``.pth`` layout, converted once with the importer.
Talking to the Hub is :mod:`oldphoto.weights.hubclient`; the cache and its record are
:mod:`oldphoto.weights.cache`.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from oldphoto.errors import WeightsError, WeightsUnreachable, human_bytes
from oldphoto.fsutil import atomic_path, sha256_file
from oldphoto.weights.cache import entry_dir, forget, record_download
from oldphoto.weights.cards import card_for
from oldphoto.weights.checkpoint import checkpoint_paths, read_meta, verify_checkpoint
from oldphoto.weights.hubclient import (
    RemoteFile,
    SourceLacks,
    Unreachable,
    commit_of,
    endpoint,
    evict,
    hub_get,
    is_offline,
    probe,
)
from oldphoto.weights.sources import (
    card_path_of,
    effective_sources,
    expected_sha256,
    pinned,
    repo_path,
    required_files,
    where,
)


def _say(message: str, enabled: bool) -> None:
    if enabled:
        print(f"oldphoto: {message}", file=sys.stderr, flush=True)


def download(
    name: str,
    *,
    repo: str | None = None,
    revision: str | None = None,
    card: Mapping[str, Any] | None = None,
    progress: bool = True,
    force: bool = False,
) -> Path:
    """Fetch model ``name`` from the first source that has it, verify, convert, cache; return the folder.

    A source that does not hold the model (no such repository or file) passes to the next; no
    answer from the Hub, a wrong revision, a sha256 mismatch or a broken download fails at once.
    """
    card = card_for(name, card)
    sources = effective_sources(card, repo, revision)
    offline = is_offline()
    if not sources:
        raise WeightsError(_how_to_get(name, "its model card lists no download source that is published"))
    reasons: list[str] = []
    for source in sources:
        try:
            return _fetch(name, card, source, offline=offline, progress=progress, force=force)
        except SourceLacks as exc:
            reasons.append(str(exc))
        except Unreachable as exc:
            problem = f"not in the cache, and the Hub cannot be reached ({exc})"
            raise WeightsUnreachable(_how_to_get(name, problem), "the Hub cannot be reached") from None
    if offline:
        missing = "; ".join(reasons)
        problem = f"not in the cache and HF_HUB_OFFLINE is set (missing {missing})"
        raise WeightsUnreachable(_how_to_get(name, problem), "HF_HUB_OFFLINE is set")
    raise WeightsError(_how_to_get(name, "no source could provide it (" + "; ".join(reasons) + ")"))


def _how_to_get(name: str, problem: str) -> str:
    return (
        f"{name}: {problem}. Get it with 'oldphoto weights download {name}' on a machine with network "
        "(then copy the cache, see 'oldphoto weights path'), or convert a local copy of the published "
        "checkpoints with 'oldphoto weights import-official CHECKPOINTS DIR' and pass --weights DIR"
    )


def _link_or_copy(src: Path, dest: Path) -> None:
    """Place ``src`` at ``dest`` atomically: a hard link when the file system allows, else a copy."""
    with atomic_path(dest) as tmp:
        tmp.unlink()
        try:
            os.link(src.resolve(), tmp)
        except OSError:
            shutil.copyfile(src, tmp)


def _announce(name: str, source: Mapping[str, Any], commit: str, remote: list[RemoteFile], progress: bool) -> None:
    """Say what will be fetched from where, and how big, before the first byte."""
    layout = "converted weights" if source["kind"] == "oldphoto" else "published .pth files, converted once"
    todo = [r for r in remote if not r.cached]
    origin = f"{source['repo']}@{commit[:12]}" + (f" on {endpoint()}" if endpoint() else "") + f" ({layout})"
    if not todo:
        _say(f"{name}: files already downloaded from {origin}", progress and source["kind"] != "oldphoto")
        return
    sizes = [r.size for r in todo]
    total = human_bytes(sum(s for s in sizes if s is not None)) + ("+" if None in sizes else "")
    listing = ", ".join(f"{r.path} {human_bytes(r.size)}" for r in todo)
    kept = len(remote) - len(todo)
    more = f"; {kept} more already downloaded" if kept else ""
    _say(f"{name}: downloading {len(todo)} file{'s' if len(todo) > 1 else ''} ({total}) from {origin}: {listing}{more}", progress)


def _fetch(name: str, card: Mapping[str, Any], source: Mapping[str, Any], *, offline: bool, progress: bool, force: bool) -> Path:
    """Download, verify and convert one model from one source into its cache folder."""
    files = required_files(name, card, source)
    at = where(source)
    remote: dict[str, RemoteFile] = {}
    commit: str | None = None
    if not offline:
        commit, found = probe(source, files)
        remote = {r.filename: r for r in found}
        if force:
            for r in found:
                r.cached = False
        _announce(name, source, commit, found, progress)
    pointers: dict[str, Path] = {}
    absent: list[str] = []
    for i, f in enumerate(files):
        # The first file at the source's revision (so the client records the branch for offline
        # use), the rest at the commit it resolved to, even if the branch moves meanwhile.
        rev = source.get("revision") if i == 0 or commit is None else commit
        try:
            pointers[f] = hub_get(source, f, revision=rev, offline=offline, progress=progress, force=force)
        except SourceLacks:
            if not offline:
                raise
            absent.append(repo_path(source, f))
            continue
        got = commit_of(pointers[f], f, source.get("subfolder"))
        if commit is not None and got is not None and got != commit:
            raise WeightsError(f"{at}: moved from commit {commit} to {got} while downloading {name}; run the command again")
        commit = commit or got
    if absent:
        raise SourceLacks(f"{', '.join(absent)} from {at}")
    hashes: dict[str, dict[str, Any]] = {}
    for f, pointer in pointers.items():
        actual = sha256_file(pointer)
        expected = expected_sha256(source, f)
        announced = remote[f].sha256 if f in remote and source["kind"] == "published" else None
        for wanted, said in ((expected, "expected"), (announced, "the Hub announced")):
            if wanted is not None and actual != wanted:
                evict(pointer)
                raise WeightsError(
                    f"{at}/{repo_path(source, f)}: sha256 mismatch ({said} {wanted}, got {actual}); the download was deleted"
                )
        hashes[f] = {"sha256": actual, "size": pointer.stat().st_size, "etag": remote[f].etag if f in remote else None}
    folder = entry_dir(name, source)
    folder.mkdir(parents=True, exist_ok=True)
    forget(folder)
    if source["kind"] == "oldphoto":
        _install_converted(name, pointers, folder, at)
    else:
        _install_published(name, card, source, pointers, folder, at)
    verified = pinned(source, files)
    record_download(folder, name, source, commit, hashes, verified)
    if not verified:
        _say(
            f"{name}: unverified (no published sha256 to check against): trusted on first use and recorded as "
            f"{source['repo']}@{commit or 'unknown'} with the sha256 of each file; 'oldphoto weights verify' re-checks",
            progress,
        )
    return folder


def _install_converted(name: str, pointers: Mapping[str, Path], folder: Path, at: str) -> None:
    weights, meta = checkpoint_paths(folder, name)
    _link_or_copy(pointers[weights.name], weights)
    _link_or_copy(pointers[meta.name], meta)
    try:
        read_meta(folder, name)
        if not verify_checkpoint(folder, name):
            raise WeightsError(f"{at}/{weights.name}: does not match the sha256 in {meta.name}; the download was deleted")
    except WeightsError:
        for p in (weights, meta):
            p.unlink(missing_ok=True)
        for pointer in pointers.values():
            evict(pointer)
        raise


def _install_published(
    name: str, card: Mapping[str, Any], source: Mapping[str, Any], pointers: Mapping[str, Path], folder: Path, at: str
) -> None:
    from oldphoto.weights.importer import import_files

    files = {card_path_of(name, card, source, f): p for f, p in pointers.items()}
    try:
        _, warnings = import_files(name, card, files, folder)
    except WeightsError as exc:
        raise WeightsError(f"{at}: cannot convert {name} from the published files ({exc})") from None
    for warning in warnings:
        _say(f"{name}: {warning}", True)

