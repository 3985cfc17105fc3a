"""Find, download, convert, cache and verify model weights.

Resolution order for a model: an explicit ``--weights DIR`` (our format) -> our cache ->
download from the card's sources in order (:mod:`oldphoto.sources`; the network side is
:mod:`oldphoto.hubclient`). A source of kind ``oldphoto`` holds our safetensors; a source of
kind ``published`` holds the published ``.pth`` layout and is converted once with the importer.
Either way the result is cached in our format under :func:`cache_root`, one folder per model
and source, with a ``download.json`` record written last: a folder without that record is
never used. The record holds what was trusted: the commit the Hub resolved and the sha256 of
every file read, so ``weights verify`` can re-check the cache and the Hub against it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from oldphoto.checkpoint import checkpoint_paths, has_checkpoint, read_meta, verify_checkpoint
from oldphoto.errors import WeightsError, human_bytes
from oldphoto.fsutil import atomic_path, atomic_write_bytes, sha256_file
from oldphoto.hubclient import (
    RemoteFile,
    SourceLacks,
    Unreachable,
    cached_pointer,
    commit_of,
    endpoint,
    evict,
    hf_home,
    hub_cache_dir,
    hub_get,
    is_offline,
    probe,
)
from oldphoto.sources import (
    COMMIT_RE,
    DEFAULT_REPO,
    KINDS,
    PUBLISHED_REPO,
    card_path_of,
    describe,
    effective_sources,
    expected_sha256,
    key,
    repo_path,
    required_files,
    where,
)

__all__ = [
    "DEFAULT_REPO", "KINDS", "PUBLISHED_REPO", "cache_root", "cached_folder", "download", "effective_sources",
    "entry_dir", "hub_cache_dir", "is_offline", "required_files", "resolve_weights", "verify_cached", "weights_status",
]

RECORD = "download.json"
RECORD_FORMAT = "oldphoto-download"


def cache_root() -> Path:
    """Our cache of converted weights: ``$OLDPHOTO_CACHE``, else ``<HF_HOME>/oldphoto``."""
    explicit = os.environ.get("OLDPHOTO_CACHE")
    return Path(os.path.expanduser(explicit)) if explicit else hf_home() / "oldphoto"


def _say(message: str, enabled: bool) -> None:
    if enabled:
        print(f"oldphoto: {message}", file=sys.stderr, flush=True)


def _card(name: str, card: Mapping[str, Any] | None) -> dict[str, Any]:
    from oldphoto.cards import load_card

    return dict(card) if card is not None else load_card(name)


def entry_dir(name: str, source: Mapping[str, Any]) -> Path:
    """Where model ``name`` fetched from ``source`` is cached in our format."""
    return cache_root() / name / key(source)


def _read_record(folder: Path) -> dict[str, Any] | None:
    try:
        record = json.loads((folder / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("format") == RECORD_FORMAT else None


def _write_record(folder: Path, record: Mapping[str, Any]) -> None:
    atomic_write_bytes(folder / RECORD, (json.dumps(record, indent=2) + "\n").encode())


def _entry_folder(name: str, source: Mapping[str, Any]) -> Path:
    """The source's cache folder; for a revision that is a commit, also one fetched at the branch that resolved to it."""
    folder = entry_dir(name, source)
    rev = source.get("revision") or ""
    if _read_record(folder) is None and COMMIT_RE.match(rev):
        at_branch = entry_dir(name, {**source, "revision": None})
        if (_read_record(at_branch) or {}).get("commit") == rev:
            return at_branch
    return folder


def _check_entry(name: str, card: Mapping[str, Any], source: Mapping[str, Any]) -> Path | None:
    """Return the cached folder for (name, source) if complete and consistent with the card."""
    folder = _entry_folder(name, source)
    record = _read_record(folder)
    if record is None or not has_checkpoint(folder, name):
        return None
    files = record.get("files", {})
    needed = required_files(name, card, source)
    known = {f: expected_sha256(source, f) for f in needed}
    if any(sha is not None and files.get(f, {}).get("sha256") != sha for f, sha in known.items()):
        return None
    verified = bool(needed) and all(sha is not None for sha in known.values())
    if verified != bool(record.get("verified")):
        with contextlib.suppress(OSError):  # a read-only cache still serves; the flag is only a summary
            _write_record(folder, {**record, "verified": verified})
    return folder


def cached_folder(name: str, *, repo: str | None = None, revision: str | None = None, card: Mapping[str, Any] | None = None) -> Path | None:
    """The cached folder of model ``name`` for the first source that has one, or None (no network)."""
    card = _card(name, card)
    for source in effective_sources(card, repo, revision):
        folder = _check_entry(name, card, source)
        if folder is not None:
            return folder
    return None


def resolve_weights(
    name: str,
    *,
    weights_dir: Path | str | None = None,
    repo: str | None = None,
    revision: str | None = None,
    card: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> Path:
    """Return the folder holding ``NAME.safetensors`` + ``NAME.json``, downloading it if needed.

    Order: ``weights_dir`` (must hold the model) -> our cache -> the card's sources in order.
    Raises WeightsError with one line naming the model and what to do when nothing works.
    """
    if weights_dir is not None:
        if not has_checkpoint(weights_dir, name):
            raise WeightsError(
                f"{weights_dir}: no '{name}' model ({name}.safetensors + {name}.json); import it with "
                "'oldphoto weights import-official' or omit --weights to download it"
            )
        return Path(weights_dir)
    card = _card(name, card)
    found = cached_folder(name, repo=repo, revision=revision, card=card)
    if found is not None:
        return found
    return download(name, repo=repo, revision=revision, card=card, progress=progress)


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
    card = _card(name, card)
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
            raise WeightsError(_how_to_get(name, f"not in the cache, and the Hub cannot be reached ({exc})")) from None
    if offline:
        missing = "; ".join(reasons)
        raise WeightsError(_how_to_get(name, f"not in the cache and HF_HUB_OFFLINE is set (missing {missing})"))
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
    with contextlib.suppress(FileNotFoundError):
        (folder / RECORD).unlink()
    if source["kind"] == "oldphoto":
        _install_converted(name, pointers, folder, at)
    else:
        _install_published(name, card, source, pointers, folder, at)
    verified = all(expected_sha256(source, f) is not None for f in files)
    record = {
        "format": RECORD_FORMAT,
        "version": 1,
        "name": name,
        "kind": source["kind"],
        "repo": source["repo"],
        "revision": source.get("revision"),
        "subfolder": source.get("subfolder") or None,
        "commit": commit,
        "files": hashes,
        "verified": verified,
        "trust": "pinned" if verified else "first use",
        "fetched": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    _write_record(folder, record)
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
    from oldphoto.importer import import_files

    files = {card_path_of(name, card, source, f): p for f, p in pointers.items()}
    try:
        _, warnings = import_files(name, card, files, folder)
    except WeightsError as exc:
        raise WeightsError(f"{at}: cannot convert {name} from the published files ({exc})") from None
    for warning in warnings:
        _say(f"{name}: {warning}", True)


def _dir_size(folder: Path, name: str) -> int:
    return sum(p.stat().st_size for p in checkpoint_paths(folder, name) if p.is_file())


def weights_status(
    names: Iterable[str] | None = None,
    *,
    weights_dir: Path | str | None = None,
    cards: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """One dict per model: name, where (None, "weights dir" or "cache"), path, present, verified, size, sources.

    ``verified`` is True when every downloaded file matched a published sha256, None when there
    was nothing to check against (a local import, trust on first use). A cached model also has
    ``repo`` and ``commit`` (what it was fetched from) and ``source`` (``repo@commit``). No
    network, no hashing: ``verify_cached`` re-hashes.
    """
    from oldphoto.cards import card_names, load_card

    if cards is None:
        names = list(names) if names is not None else list(card_names())
        cards = {n: load_card(n) for n in names}
    rows = []
    for name in names if names is not None else cards:
        card = cards[name]
        row: dict[str, Any] = {
            "name": name,
            "where": None,
            "path": None,
            "present": False,
            "verified": None,
            "size": None,
            "repo": None,
            "commit": None,
            "sources": [describe(s) for s in effective_sources(card)],
        }
        if weights_dir is not None and has_checkpoint(weights_dir, name):
            row.update(where="weights dir", path=str(weights_dir), present=True, size=_dir_size(Path(weights_dir), name))
        else:
            folder = cached_folder(name, card=card)
            if folder is not None:
                record = _read_record(folder) or {}
                row.update(
                    where="cache",
                    path=str(folder),
                    present=True,
                    size=_dir_size(folder, name),
                    verified=True if record.get("verified") else None,
                    repo=record.get("repo"),
                    commit=record.get("commit"),
                    source=f"{record.get('repo')}@{record.get('commit') or record.get('revision') or 'main'}",
                )
        rows.append(row)
    return rows


def verify_cached(name: str, *, card: Mapping[str, Any] | None = None, remote: bool = True) -> tuple[Path | None, bool, str]:
    """Re-check the cached copy of ``name``: ``(folder, ok, detail)``; folder None when not cached.

    Locally: the safetensors against its metadata, the files against the card's pinned sha256s,
    and the downloaded source files still in the Hub client's cache against the sha256s recorded
    at download. With ``remote`` (and not offline): what the Hub now serves at the recorded
    commit against what it served then (the announced sha256 or etag of each file).
    """
    card = _card(name, card)
    folder = cached_folder(name, card=card)
    if folder is None:
        return None, False, "not cached"
    if not verify_checkpoint(folder, name):
        return folder, False, f"{name}.safetensors does not match the sha256 recorded in {name}.json"
    record = _read_record(folder) or {}
    source = next((s for s in effective_sources(card) if _entry_folder(name, s) == folder), None)
    source = source or {"kind": record.get("kind"), "repo": record.get("repo"), "subfolder": record.get("subfolder"), "files": {}}
    if record.get("kind") == "oldphoto":
        for f, path in zip((f"{name}.safetensors", f"{name}.json"), checkpoint_paths(folder, name), strict=True):
            expected = expected_sha256(source, f)
            if expected is not None and sha256_file(path) != expected:
                return folder, False, f"{f} does not match the sha256 in the model card"
    commit = record.get("commit")
    files: dict[str, Any] = record.get("files") or {}
    at = f"{record.get('repo')}@{commit}"
    if commit:
        for f, info in files.items():
            pointer = cached_pointer(source, f, commit)
            if pointer is not None and sha256_file(pointer) != info.get("sha256"):
                return folder, False, f"{repo_path(source, f)} from {at}: the downloaded copy no longer matches its recorded sha256"
    checked = "not re-checked against the Hub"
    if remote and commit and files and not is_offline():
        try:
            _, now = probe(source, list(files), revision=commit)
        except Unreachable as exc:
            checked = f"not re-checked against the Hub, which cannot be reached: {exc}"
        except (SourceLacks, WeightsError) as exc:
            return folder, False, f"{at}: the Hub no longer serves what was downloaded ({exc})"
        else:
            for r in now:
                info = files.get(r.filename) or {}
                then = info.get("etag")
                changed = (then is not None and r.etag is not None and r.etag != then) or (
                    then is None and r.sha256 is not None and r.sha256 != info.get("sha256")
                )
                if changed:
                    return folder, False, (
                        f"{r.path} changed on the Hub under the same commit {commit} "
                        f"(downloaded sha256 {info.get('sha256')}, now {r.sha256 or 'etag ' + str(r.etag)})"
                    )
            checked = "the Hub still serves the same files"
    if record.get("verified"):
        return folder, True, "verified"
    if not commit:
        return folder, True, "intact (unverified: no published sha256)"
    return folder, True, f"intact; trusted on first use from {at} ({checked}; no published sha256)"
