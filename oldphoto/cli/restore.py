"""``oldphoto restore IN OUT``: restore one photo through :class:`oldphoto.Restorer`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from oldphoto.cli.common import console, fail


def restore(
    src: Path = typer.Argument(..., help="Photo to restore."),
    dest: Path = typer.Argument(..., help="Where to write the restored photo (format from the extension)."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Folder of oldphoto checkpoints (from 'weights import-official')."),
    mode: str = typer.Option("auto", "--mode", help="auto, quality, scratch or hr."),
    mask: Optional[Path] = typer.Option(None, "--mask", help="Damage mask (white = damaged); implies scratch mode."),
    detect_scratches: bool = typer.Option(False, "--detect-scratches", help="Find the damage with the scratch detector."),
    postprocess: str = typer.Option("default", "--postprocess", help="default (exact input size) or published."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    precision: str = typer.Option("auto", "--precision", help="auto, fp32, bf16 or fp16."),
) -> None:
    """Restore an old photo.

    Example: oldphoto restore old.jpg restored.png --mask scratches.png
    """
    from oldphoto.api import Restorer
    from oldphoto.errors import OldPhotoError, UsageError
    from oldphoto.imageio import load_image, output_format, save_image

    try:
        if src.resolve() == dest.resolve():
            raise UsageError(f"{dest}: refusing to write over the input photo")
        output_format(dest)
        restorer = Restorer(weights, device=device, precision=precision)
        photo = load_image(src)
        for warning in photo.warnings:
            console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)
        result = restorer.restore_detailed(
            photo.image, mask, mode=mode, detect_scratches=detect_scratches, postprocess=postprocess
        )
        save_image(result.image, dest, exif=photo.exif, icc_profile=photo.icc_profile)
    except UsageError as exc:
        fail(str(exc), code=2)
    except OldPhotoError as exc:
        fail(str(exc))
    console.print(f"restored {src} -> {dest} ({result.mode} mode, {result.seconds:.1f} s)", highlight=False)
