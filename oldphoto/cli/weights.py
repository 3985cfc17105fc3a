"""``oldphoto weights …``: import the published checkpoints, download, list, verify."""

from __future__ import annotations

from pathlib import Path

import typer

from oldphoto.cli.common import fail, console

app = typer.Typer(help="Get, convert and check model weights.", no_args_is_help=True)


@app.command("import-official")
def import_official(
    src: Path = typer.Argument(..., help="Folder laid out like the published 'checkpoints/' (or the folder holding it)."),
    dest: Path = typer.Argument(..., help="Folder to write oldphoto checkpoints into (use it with --weights)."),
    strict: bool = typer.Option(False, "--strict", help="Treat unexpected keys in the published files as errors."),
) -> None:
    """Convert the published .pth checkpoints into oldphoto's safetensors format.

    Example: oldphoto weights import-official ~/Downloads/checkpoints ./weights-local
    """
    from oldphoto.errors import OldPhotoError
    from oldphoto.importer import import_official as run_import

    try:
        report = run_import(src, dest, strict=strict)
    except OldPhotoError as exc:
        fail(str(exc))
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)
    for name, path in report.imported.items():
        console.print(f"imported {name} -> {path}", highlight=False)
    for name, why in report.missing.items():
        console.print(f"[dim]not imported {name}: {why}[/dim]", highlight=False)
    if not report.imported:
        fail(f"{src}: no model could be imported (see the reasons above)")
