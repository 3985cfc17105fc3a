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
