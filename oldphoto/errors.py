"""User-facing errors, each one line naming the file and the problem, and the wording helpers they share."""

from __future__ import annotations

from collections.abc import Iterable


class OldPhotoError(Exception):
    """An error the CLI reports as one line (no traceback) with a non-zero exit."""


class ImageError(OldPhotoError):
    """An input image (or mask) cannot be read or is not usable."""


class WeightsError(OldPhotoError):
    """Weights are missing, malformed, unverified where verification is required, or unsafe."""


class WeightsUnreachable(WeightsError):
    """Weights are not cached and nothing can be downloaded now (no answer from the Hub, or HF_HUB_OFFLINE).

    The expected state of a machine without network, not a fault: ``why`` says it in a few words.
    """

    def __init__(self, message: str, why: str) -> None:
        super().__init__(message)
        self.why = why


class UsageError(OldPhotoError):
    """The caller asked for something contradictory or impossible (bad option values)."""


class ModeUnavailable(OldPhotoError):
    """A photo needs a network the chosen model lacks (the bundled lite model has no hr mode or faces)."""


def one_line(exc: BaseException, *, named: bool = False) -> str:
    """An exception's message squeezed onto one line (some decoders put newlines in theirs).

    ``named`` prefixes the exception's type, for errors nobody anticipated ("RuntimeError:
    out of memory" says more than "out of memory"); an empty message gives the type alone.
    """
    text = " ".join(str(exc).split())
    if not text:
        return type(exc).__name__
    return f"{type(exc).__name__}: {text}" if named else text


def short_list(items: Iterable[str], limit: int = 8) -> str:
    """Sorted ``items`` joined by commas, at most ``limit`` of them and a count of the rest."""
    items = sorted(items)
    more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def human_bytes(nbytes: float | None) -> str:
    """A byte count for people, in binary units as ``--max-memory`` reads them: ``512 B``, ``1.5 GB``; None is ``-``."""
    if nbytes is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if nbytes < 1024:
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return f"{nbytes:.1f} TB"
