"""Our cache of converted weights: what is cached, what was trusted, and re-checking it.

One folder per model and source under :func:`cache_root` holds the model in our format and a
``download.json`` record written last: a folder without that record is never used. The record
holds what was trusted (trust on first use where no sha256 is pinned): the commit the Hub
resolved and the sha256 of every file read, so :func:`verify_cached` can re-check the cache
and the Hub against it. No download happens here (that is :mod:`oldphoto.weights.download`).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from oldphoto.errors import WeightsError
from oldphoto.fsutil import atomic_write_bytes, sha256_file
from oldphoto.weights.cards import card_for, card_names
from oldphoto.weights.checkpoint import checkpoint_paths, has_checkpoint, verify_checkpoint
from oldphoto.weights.hubclient import SourceLacks, Unreachable, cached_pointer, hf_home, is_offline, probe
from oldphoto.weights.sources import (
    COMMIT_RE,
    describe,
    effective_sources,
    expected_sha256,
    key,
    pinned,
    repo_path,
    required_files,
)

RECORD = "download.json"
RECORD_FORMAT = "oldphoto-download"


def cache_root() -> Path:
    """Our cache of converted weights: ``$OLDPHOTO_CACHE``, else ``<HF_HOME>/oldphoto``."""
    explicit = os.environ.get("OLDPHOTO_CACHE")
    return Path(os.path.expanduser(explicit)) if explicit else hf_home() / "oldphoto"


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


def forget(folder: Path) -> None:
    """Remove the record of ``folder`` before its files are replaced, so a half-written entry is never used."""
    with contextlib.suppress(FileNotFoundError):
        (folder / RECORD).unlink()


def record_download(
    folder: Path, name: str, source: Mapping[str, Any], commit: str | None, hashes: Mapping[str, Any], verified: bool
) -> None:
    """Write the record of a finished download (last, once every file is in place): what was trusted, and how."""
    record = {
        "format": RECORD_FORMAT,
        "version": 1,
        "name": name,
        "kind": source["kind"],
        "repo": source["repo"],
        "revision": source.get("revision"),
        "subfolder": source.get("subfolder") or None,
        "commit": commit,
        "files": dict(hashes),
        "verified": verified,
        "trust": "pinned" if verified else "first use",
        "fetched": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    _write_record(folder, record)


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
    verified = pinned(source, needed)
    if verified != bool(record.get("verified")):
        with contextlib.suppress(OSError):  # a read-only cache still serves; the flag is only a summary
            _write_record(folder, {**record, "verified": verified})
    return folder


def cached_folder(name: str, *, repo: str | None = None, revision: str | None = None, card: Mapping[str, Any] | None = None) -> Path | None:
    """The cached folder of model ``name`` for the first source that has one, or None (no network)."""
    card = card_for(name, card)
    for source in effective_sources(card, repo, revision):
        folder = _check_entry(name, card, source)
        if folder is not None:
            return folder
    return None


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
    if cards is None:
        names = list(names) if names is not None else list(card_names())
        cards = {n: card_for(n) for n in names}
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
    card = card_for(name, card)
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
