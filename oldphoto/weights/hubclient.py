"""The Hub client: ask the Hub what a source holds, download one file, fail fast offline.

Everything goes through ``huggingface_hub``, so its cache, ``HF_HOME``, ``HF_ENDPOINT``,
``HF_HUB_OFFLINE``, tokens and proxies apply. Before anything is downloaded, :func:`probe`
asks for each file's metadata once, without the client's retries and with a short connect
timeout: an unreachable Hub is known within about two seconds (:class:`Unreachable`), a
missing file before any byte is fetched (:class:`SourceLacks`), and the sizes are known for
the announcement. (Where packets are dropped rather than refused, the client's own agent-registry
lookup, at most once a day per process, can add up to 3 s; ``HF_HUB_DISABLE_TELEMETRY=1`` skips it.)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oldphoto.errors import WeightsError
from oldphoto.weights.sources import repo_path, where

#: Seconds to wait for a connection to the Hub before calling it unreachable.
CONNECT_TIMEOUT = 2.0
#: Seconds to wait for the Hub's answer to a metadata request once connected.
READ_TIMEOUT = 10.0


class SourceLacks(Exception):
    """This source cannot provide the model (absent repository or file): try the next one."""


class Unreachable(Exception):
    """No answer from the Hub (no network, no route, refused, not a Hub): no source can be tried."""


@dataclass
class RemoteFile:
    """What the Hub says of one file: its path below the subfolder, size, etag, and whether it is cached."""

    filename: str
    path: str
    size: int | None
    etag: str | None
    cached: bool

    @property
    def sha256(self) -> str | None:
        """The sha256 the Hub announces (the etag of a large file), else None."""
        etag = (self.etag or "").lower()
        return etag if len(etag) == 64 and all(c in "0123456789abcdef" for c in etag) else None


def hf_home() -> Path:
    """``HF_HOME`` as huggingface_hub computes it, read now (its constants are read at import)."""
    home = os.environ.get("HF_HOME")
    if not home:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        home = os.path.join(xdg, "huggingface")
    return Path(os.path.expandvars(os.path.expanduser(home)))


def hub_cache_dir() -> Path:
    """The huggingface_hub download cache (``HF_HUB_CACHE``, else ``<HF_HOME>/hub``)."""
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    return Path(os.path.expandvars(os.path.expanduser(explicit))) if explicit else hf_home() / "hub"


def endpoint() -> str | None:
    """``HF_ENDPOINT`` (None: the client's default, huggingface.co)."""
    return os.environ.get("HF_ENDPOINT", "").rstrip("/") or None


def endpoint_name() -> str:
    return endpoint() or "https://huggingface.co"


def is_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) asks for no network access."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().upper() in {"1", "ON", "YES", "TRUE"}


def _timeout() -> Any:
    try:
        import httpx2

        return httpx2.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT)
    except ImportError:  # another HTTP backend: one number for every phase
        return CONNECT_TIMEOUT


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The HTTP library's transport errors (connection refused, DNS, timeouts, proxies)."""
    found: list[type[BaseException]] = []
    for module, attr in (("httpx2", "TransportError"), ("httpx", "TransportError"), ("requests", "ConnectionError")):
        with contextlib.suppress(ImportError, AttributeError):
            found.append(getattr(__import__(module), attr))
    return tuple(found)


def network_errors() -> tuple[type[BaseException], ...]:
    """HTTP-library errors the client may let through mid-download (httpx2, httpx or requests)."""
    found: list[type[BaseException]] = []
    for module, attr in (("httpx2", "HTTPError"), ("httpx", "HTTPError"), ("requests", "RequestException")):
        with contextlib.suppress(ImportError, AttributeError):
            found.append(getattr(__import__(module), attr))
    return tuple(found)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def probe(source: Mapping[str, Any], files: Sequence[str], revision: str | None = None) -> tuple[str, list[RemoteFile]]:
    """Ask the Hub for each file's metadata; return the commit the revision resolved to and the files.

    All files are asked at the commit the first answer named, so they come from one commit.
    Raises SourceLacks (no such repository or file: try the next source), Unreachable (no
    answer: stop), or WeightsError (a revision that does not exist).
    """
    from huggingface_hub import get_hf_file_metadata, hf_hub_url, try_to_load_from_cache
    from huggingface_hub.errors import FileMetadataError, HfHubHTTPError
    from huggingface_hub.utils import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    from oldphoto import __version__

    repo = source["repo"]
    rev = revision or source.get("revision") or "main"
    commit: str | None = None
    found: list[RemoteFile] = []
    for filename in files:
        path = repo_path(source, filename)
        url = hf_hub_url(repo, path, revision=commit or rev, endpoint=endpoint())
        try:
            meta = get_hf_file_metadata(
                url, timeout=_timeout(), library_name="oldphoto", library_version=__version__, retry_on_errors=False
            )
        except RevisionNotFoundError:
            raise WeightsError(f"{repo}: revision {rev!r} not found (check --revision or the model card)") from None
        except RepositoryNotFoundError:
            raise SourceLacks(f"{repo}: repository not found or private (set HF_TOKEN for a private one)") from None
        except EntryNotFoundError:
            raise SourceLacks(f"{where(source, commit or revision)}: has no {path}") from None
        except (FileMetadataError, HfHubHTTPError, *_transport_errors()) as exc:
            raise Unreachable(f"{endpoint_name()}: {_first_line(exc)}") from None
        if meta.commit_hash is None:
            raise Unreachable(f"{endpoint_name()}: answers without a commit id (not a Hugging Face Hub)")
        commit = commit or meta.commit_hash
        cached = try_to_load_from_cache(repo, path, cache_dir=hub_cache_dir(), revision=commit)
        found.append(RemoteFile(filename, path, meta.size, meta.etag, isinstance(cached, str)))
    assert commit is not None, "probe needs at least one file"
    return commit, found


def progress_kwargs(fn: Any, progress: bool) -> dict[str, Any]:
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


def hub_get(source: Mapping[str, Any], filename: str, *, revision: str | None, offline: bool, progress: bool, force: bool) -> Path:
    """Download one file with huggingface_hub; map its errors to ours (``SourceLacks`` = try the next)."""
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
    rev = revision or None
    at = where(source, rev)
    try:
        path = hf_hub_download(
            repo,
            filename,
            subfolder=source.get("subfolder") or None,
            revision=rev,
            cache_dir=hub_cache_dir(),
            endpoint=endpoint(),
            local_files_only=offline,
            force_download=force and not offline,
            library_name="oldphoto",
            library_version=__version__,
            **progress_kwargs(hf_hub_download, progress),
        )
    except RevisionNotFoundError:
        raise WeightsError(f"{repo}: revision {rev!r} not found (check --revision or the model card)") from None
    except RepositoryNotFoundError:
        raise SourceLacks(f"{repo}: repository not found or private (set HF_TOKEN for a private one)") from None
    except (LocalEntryNotFoundError, OfflineModeIsEnabled):
        if offline:
            raise SourceLacks(repo_path(source, filename)) from None
        raise WeightsError(f"{at}/{repo_path(source, filename)}: the Hub stopped answering; nothing was kept") from None
    except EntryNotFoundError:
        raise SourceLacks(f"{at}: has no {repo_path(source, filename)}") from None
    except (HfHubHTTPError, OSError, *network_errors()) as exc:
        raise WeightsError(f"{at}/{repo_path(source, filename)}: download failed, nothing was kept ({_first_line(exc)})") from None
    return Path(path)


def evict(pointer: Path) -> None:
    """Delete a downloaded file from the huggingface_hub cache: its snapshot link and its blob."""
    blob = pointer.resolve()
    for p in (pointer, blob):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def commit_of(pointer: Path, filename: str, subfolder: str | None) -> str | None:
    """The commit of a file in the huggingface_hub cache (the snapshot folder it lies in)."""
    depth = len(Path(filename).parts) + len(Path(subfolder).parts if subfolder else ())
    snapshot = pointer.parents[depth - 1]
    return snapshot.name if snapshot.parent.name == "snapshots" else None


def cached_pointer(source: Mapping[str, Any], filename: str, commit: str) -> Path | None:
    """The huggingface_hub cache's copy of ``filename`` at ``commit``, if it is still there."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(source["repo"], repo_path(source, filename), cache_dir=hub_cache_dir(), revision=commit)
    return Path(found) if isinstance(found, str) else None
