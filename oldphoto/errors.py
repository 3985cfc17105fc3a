"""User-facing errors: each carries one line that names the file and the problem."""

from __future__ import annotations


class OldPhotoError(Exception):
    """An error the CLI reports as one line (no traceback) with a non-zero exit."""


class ImageError(OldPhotoError):
    """An input image (or mask) cannot be read or is not usable."""


class WeightsError(OldPhotoError):
    """Weights are missing, malformed, unverified where verification is required, or unsafe."""


class UsageError(OldPhotoError):
    """The caller asked for something contradictory or impossible (bad option values)."""


def one_line(exc: BaseException, *, named: bool = False) -> str:
    """An exception's message squeezed onto one line (some decoders put newlines in theirs).

    ``named`` prefixes the exception's type, for errors nobody anticipated ("RuntimeError:
    out of memory" says more than "out of memory"); an empty message gives the type alone.
    """
    text = " ".join(str(exc).split())
    if not text:
        return type(exc).__name__
    return f"{type(exc).__name__}: {text}" if named else text
