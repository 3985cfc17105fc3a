"""Console, error reporting and option parsing shared by the CLI commands."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

console = Console(stderr=True)


def say(style: str, label: str, message: str) -> None:
    """Print ``label: message`` with the label styled; the message is never read as markup."""
    console.print(f"[{style}]{label}:[/{style}] {escape(message)}", highlight=False, soft_wrap=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` on one line to stderr and exit with ``code``."""
    console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)
