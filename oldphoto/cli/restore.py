"""Placeholder: the `restore` command is being written (issue 3)."""

from __future__ import annotations


def restore() -> None:
    """Not yet available."""
    raise SystemExit("oldphoto restore: not yet available")
