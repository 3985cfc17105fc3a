"""Placeholder: the `info` command is being written (issue 3)."""

from __future__ import annotations


def info() -> None:
    """Not yet available."""
    raise SystemExit("oldphoto info: not yet available")
