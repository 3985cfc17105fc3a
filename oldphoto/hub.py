"""Find, download, convert, cache and verify model weights (the Hugging Face Hub side).

Resolution order for a model: an explicit ``--weights DIR`` (our format) -> our cache ->
download from the card's sources, in order. Downloads go through ``huggingface_hub`` so its
cache, ``HF_HOME``, ``HF_ENDPOINT``, ``HF_HUB_OFFLINE``, tokens and proxies all apply. A source
of kind ``oldphoto`` holds our safetensors; a source of kind ``published`` mirrors the published
``.pth`` layout and is converted once with the importer. Either way the result is cached in our
format under :func:`cache_root`, one folder per model and source, with a ``download.json``
record written last: a folder without that record is never used.
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
from oldphoto.errors import WeightsError
from oldphoto.fsutil import atomic_path, atomic_write_bytes, sha256_file

#: The project's own Hub repository of converted safetensors (first source of every card).
DEFAULT_REPO = "oldphoto/bringing-old-photos-back-to-life"
RECORD = "download.json"
RECORD_FORMAT = "oldphoto-download"
KINDS = ("oldphoto", "published")


def _hf_home() -> Path:
    """``HF_HOME`` as huggingface_hub computes it, read now (its constants are read at import)."""
    home = os.environ.get("HF_HOME")
    if not home:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        home = os.path.join(xdg, "huggingface")
    return Path(os.path.expandvars(os.path.expanduser(home)))


def hub_cache_dir() -> Path:
    """The huggingface_hub download cache (``HF_HUB_CACHE``, else ``<HF_HOME>/hub``)."""
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    return Path(os.path.expandvars(os.path.expanduser(explicit))) if explicit else _hf_home() / "hub"


def cache_root() -> Path:
    """Our cache of converted weights: ``$OLDPHOTO_CACHE``, else ``<HF_HOME>/oldphoto``."""
    explicit = os.environ.get("OLDPHOTO_CACHE")
    return Path(os.path.expanduser(explicit)) if explicit else _hf_home() / "oldphoto"


def _endpoint() -> str | None:
    return os.environ.get("HF_ENDPOINT", "").rstrip("/") or None


def is_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) asks for no network access."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().upper() in {"1", "ON", "YES", "TRUE"}


def _say(message: str, enabled: bool) -> None:
    if enabled:
        print(f"oldphoto: {message}", file=sys.stderr, flush=True)


def _card(name: str, card: Mapping[str, Any] | None) -> dict[str, Any]:
    from oldphoto.cards import load_card

    return dict(card) if card is not None else load_card(name)


def required_files(name: str, card: Mapping[str, Any], source: Mapping[str, Any]) -> list[str]:
    """Files (repo paths below the source's subfolder) that model ``name`` needs from ``source``."""
    if source.get("kind") == "oldphoto":
        return [f"{name}.safetensors", f"{name}.json"]
    return sorted({spec["source"] for spec in card["networks"].values()})


def effective_sources(card: Mapping[str, Any], repo: str | None = None, revision: str | None = None) -> list[dict[str, Any]]:
    """The card's sources in order, with ``repo`` / ``OLDPHOTO_REPO`` and ``revision`` applied to the first.

    A fork or private mirror may hold other bytes than the official files, so an overridden
    source carries no expected sha256: what it serves is reported as unverified.
    """
    sources = [dict(s) for s in card.get("sources", [])]
    for s in sources:
        if s.get("kind") not in KINDS:
            raise WeightsError(f"model card {card.get('name')!r}: source kind {s.get('kind')!r} is not one of {KINDS}")
    repo = repo or os.environ.get("OLDPHOTO_REPO") or None
    if repo or revision:
        first = sources[0] if sources else {"kind": "oldphoto", "repo": DEFAULT_REPO, "revision": None}
        changed = dict(first, overridden=True)
        if repo and repo != first.get("repo"):
            changed["repo"] = repo
        if revision and revision != first.get("revision"):
            changed["revision"] = revision
        if changed.get("repo") != first.get("repo") or changed.get("revision") != first.get("revision"):
            changed["files"] = {}
        sources[:1] = [changed]
    return sources


def _key(source: Mapping[str, Any]) -> str:
    rev = source.get("revision") or "main"
    sub = source.get("subfolder") or ""
    raw = f"{source['kind']}--{source['repo']}@{rev}" + (f"--{sub}" if sub else "")
    return raw.replace("/", "--")


def entry_dir(name: str, source: Mapping[str, Any]) -> Path:
    """Where model ``name`` fetched from ``source`` is cached in our format."""
    return cache_root() / name / _key(source)


def _expected(source: Mapping[str, Any], filename: str) -> str | None:
    info = (source.get("files") or {}).get(filename) or {}
    sha = info.get("sha256")
    return sha.lower() if isinstance(sha, str) and sha else None


def _read_record(folder: Path) -> dict[str, Any] | None:
    try:
        record = json.loads((folder / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("format") == RECORD_FORMAT else None


def _write_record(folder: Path, record: Mapping[str, Any]) -> None:
    atomic_write_bytes(folder / RECORD, (json.dumps(record, indent=2) + "\n").encode())


def _check_entry(name: str, card: Mapping[str, Any], source: Mapping[str, Any]) -> Path | None:
    """Return the cached folder for (name, source) if complete and consistent with the card."""
    folder = entry_dir(name, source)
    record = _read_record(folder)
    if record is None or not has_checkpoint(folder, name):
        return None
    files = record.get("files", {})
    needed = required_files(name, card, source)
    known = {f: _expected(source, f) for f in needed}
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

    A source that does not hold the model (no such repository or file) passes to the next; a
    wrong revision, a sha256 mismatch or a broken download fails at once, naming the file.
    """
    card = _card(name, card)
    sources = effective_sources(card, repo, revision)
    offline = is_offline()
    if not sources:
        raise WeightsError(_how_to_get(name, "its model card lists no download source"))
    reasons: list[str] = []
    for source in sources:
        try:
            return _fetch(name, card, source, offline=offline, progress=progress, force=force)
        except _SourceLacks as exc:
            reasons.append(str(exc))
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


class _SourceLacks(Exception):
    """This source cannot provide the model (absent repo or file, or no network): try the next."""


def _progress_kwargs(fn: Any, progress: bool) -> dict[str, Any]:
    """``tqdm_class`` silencing the client's bars when asked (clients before it had the argument keep theirs)."""
    import inspect

    if progress or "tqdm_class" not in inspect.signature(fn).parameters:
        return {}
    from huggingface_hub.utils import tqdm as hf_tqdm

    class Silent(hf_tqdm):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    return {"tqdm_class": Silent}


def _hub_get(source: Mapping[str, Any], filename: str, *, offline: bool, progress: bool, force: bool) -> Path:
    """Download one file with huggingface_hub; map its errors to ours (``_SourceLacks`` = try the next)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    from oldphoto import __version__

    repo = source["repo"]
    rev = source.get("revision") or None
    where = f"{repo}@{rev}" if rev else repo
    try:
        path = hf_hub_download(
            repo,
            filename,
            subfolder=source.get("subfolder") or None,
            revision=rev,
            cache_dir=hub_cache_dir(),
            endpoint=_endpoint(),
            local_files_only=offline,
            force_download=force and not offline,
            library_name="oldphoto",
            library_version=__version__,
            **_progress_kwargs(hf_hub_download, progress),
        )
    except RevisionNotFoundError:
        raise WeightsError(f"{repo}: revision {rev!r} not found (check --revision or the model card)") from None
    except RepositoryNotFoundError:
        raise _SourceLacks(f"{repo}: repository not found or private (set HF_TOKEN for a private one)") from None
    except (LocalEntryNotFoundError, OfflineModeIsEnabled):
        if offline:
            raise _SourceLacks(filename) from None
        raise _SourceLacks(f"{where}: cannot reach the Hub for {filename}") from None
    except EntryNotFoundError:
        raise _SourceLacks(f"{where}: has no {filename}") from None
    except (HfHubHTTPError, OSError, *_network_errors()) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"{where}/{filename}: download failed, nothing was kept ({first})") from None
    return Path(path)


def _network_errors() -> tuple[type[BaseException], ...]:
    """HTTP-library errors the client may let through mid-download (httpx2, httpx or requests)."""
    found: list[type[BaseException]] = []
    for module, attr in (("httpx2", "HTTPError"), ("httpx", "HTTPError"), ("requests", "RequestException")):
        with contextlib.suppress(ImportError, AttributeError):
            found.append(getattr(__import__(module), attr))
    return tuple(found)


def _evict(pointer: Path) -> None:
    """Delete a downloaded file from the huggingface_hub cache: its snapshot link and its blob."""
    blob = pointer.resolve()
    for p in (pointer, blob):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def _commit_of(pointer: Path, filename: str, subfolder: str | None) -> str | None:
    depth = len(Path(filename).parts) + len(Path(subfolder).parts if subfolder else ())
    snapshot = pointer.parents[depth - 1]
    return snapshot.name if snapshot.parent.name == "snapshots" else None


def _link_or_copy(src: Path, dest: Path) -> None:
    """Place ``src`` at ``dest`` atomically: a hard link when the file system allows, else a copy."""
    with atomic_path(dest) as tmp:
        tmp.unlink()
        try:
            os.link(src.resolve(), tmp)
        except OSError:
            shutil.copyfile(src, tmp)


def _fetch(name: str, card: Mapping[str, Any], source: Mapping[str, Any], *, offline: bool, progress: bool, force: bool) -> Path:
    """Download, verify and convert one model from one source into its cache folder."""
    files = required_files(name, card, source)
    where = source["repo"] + (f"@{source['revision']}" if source.get("revision") else "")
    if not offline:
        layout = "our safetensors" if source["kind"] == "oldphoto" else "published .pth layout, converted once"
        _say(f"fetching {name} from {where} ({layout})", progress)
    pointers: dict[str, Path] = {}
    absent: list[str] = []
    pinned = dict(source)
    for f in files:
        try:
            pointers[f] = _hub_get(pinned, f, offline=offline, progress=progress, force=force)
        except _SourceLacks:
            if not offline:
                raise
            absent.append(f)
            continue
        # The rest of the model's files come from the same commit, even if the branch moves meanwhile.
        pinned["revision"] = _commit_of(pointers[f], f, source.get("subfolder")) or pinned.get("revision")
    if absent:
        raise _SourceLacks(f"{', '.join(absent)} from {where}")
    hashes: dict[str, dict[str, Any]] = {}
    for f, pointer in pointers.items():
        actual = sha256_file(pointer)
        expected = _expected(source, f)
        if expected is not None and actual != expected:
            _evict(pointer)
            raise WeightsError(
                f"{where}/{f}: sha256 mismatch (expected {expected}, got {actual}); the download was deleted"
            )
        hashes[f] = {"sha256": actual, "size": pointer.stat().st_size}
    folder = entry_dir(name, source)
    folder.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        (folder / RECORD).unlink()
    if source["kind"] == "oldphoto":
        _install_converted(name, pointers, folder, where)
    else:
        _install_published(name, card, source, pointers, folder, where)
    verified = all(_expected(source, f) is not None for f in files)
    first = next(iter(pointers.values()))
    record = {
        "format": RECORD_FORMAT,
        "version": 1,
        "name": name,
        "kind": source["kind"],
        "repo": source["repo"],
        "revision": source.get("revision"),
        "subfolder": source.get("subfolder") or None,
        "commit": _commit_of(first, files[0], source.get("subfolder")),
        "files": hashes,
        "verified": verified,
        "fetched": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    _write_record(folder, record)
    if not verified:
        commit = record["commit"] or "unknown commit"
        _say(f"{name}: unverified: no published sha256 to check {source['repo']}@{commit} against", progress)
    return folder


def _install_converted(name: str, pointers: Mapping[str, Path], folder: Path, where: str) -> None:
    weights, meta = checkpoint_paths(folder, name)
    _link_or_copy(pointers[weights.name], weights)
    _link_or_copy(pointers[meta.name], meta)
    try:
        read_meta(folder, name)
        if not verify_checkpoint(folder, name):
            raise WeightsError(f"{where}/{weights.name}: does not match the sha256 in {meta.name}; the download was deleted")
    except WeightsError:
        for p in (weights, meta):
            p.unlink(missing_ok=True)
        for pointer in pointers.values():
            _evict(pointer)
        raise


def _install_published(
    name: str, card: Mapping[str, Any], source: Mapping[str, Any], pointers: Mapping[str, Path], folder: Path, where: str
) -> None:
    from oldphoto.importer import import_official

    rel = next(iter(pointers))
    depth = len(Path(rel).parts)
    root = next(iter(pointers.values())).parents[depth - 1]
    report = import_official(root, folder, models=[name], cards={name: dict(card)})
    if name not in report.imported:
        why = report.missing.get(name, "not converted")
        raise WeightsError(f"{where}: cannot convert {name} from the published files ({why})")
    for warning in report.warnings:
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
    was nothing to check against (a local import, an unpinned source). No network, no hashing:
    ``verify_cached`` re-hashes.
    """
    from oldphoto.cards import card_names, load_card

    if cards is None:
        names = list(names) if names is not None else list(card_names())
        cards = {n: load_card(n) for n in names}
    rows = []
    for name in names if names is not None else cards:
        card = cards[name]
        sources = effective_sources(card)
        row: dict[str, Any] = {
            "name": name,
            "where": None,
            "path": None,
            "present": False,
            "verified": None,
            "size": None,
            "sources": [f"{s['repo']} ({s['kind']})" for s in sources],
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
                    source=f"{record.get('repo')}@{record.get('commit') or record.get('revision') or 'main'}",
                )
        rows.append(row)
    return rows


def verify_cached(name: str, *, card: Mapping[str, Any] | None = None) -> tuple[Path | None, bool, str]:
    """Re-hash the cached copy of ``name``: ``(folder, ok, detail)``; folder None when not cached."""
    card = _card(name, card)
    folder = cached_folder(name, card=card)
    if folder is None:
        return None, False, "not cached"
    if not verify_checkpoint(folder, name):
        return folder, False, f"{name}.safetensors does not match the sha256 recorded in {name}.json"
    record = _read_record(folder) or {}
    if record.get("kind") == "oldphoto":
        source = next((s for s in effective_sources(card) if entry_dir(name, s) == folder), {})
        for f, path in zip((f"{name}.safetensors", f"{name}.json"), checkpoint_paths(folder, name), strict=True):
            expected = _expected(source, f)
            if expected is not None and sha256_file(path) != expected:
                return folder, False, f"{f} does not match the sha256 in the model card"
    return folder, True, "verified" if record.get("verified") else "intact (unverified: no published sha256)"
