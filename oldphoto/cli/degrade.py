"""``oldphoto degrade IN OUT --seed N``: make synthetic old photos (and damage masks) from clean ones.

A photo, or a folder of photos, goes through the published degradation recipe
(:mod:`oldphoto.training.degrade`); ``--scratches`` adds procedural structured damage and
writes its mask. The result depends only on the photo, the options and the seed, so a test
set can be rebuilt anywhere. In a folder each photo's seed is derived from ``--seed`` and its
relative path, so adding or removing photos never changes the others.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Optional

import typer

from oldphoto.cli.common import fail, say


def photo_seed(seed: int, rel: str) -> int:
    """The seed of one photo of a folder run: ``seed`` mixed with a checksum of its relative path."""
    import numpy as np

    return int(np.random.SeedSequence([seed, zlib.crc32(rel.encode())]).generate_state(1)[0])


def mask_path_for(out: Path) -> Path:
    """Where a photo's mask goes by default: ``NAME_mask.png`` beside it."""
    return out.with_name(f"{out.stem}_mask.png")


def degrade_file(
    src: Path, dest: Path, seed: int, *, scratches: bool, kinds: tuple[str, ...], fade: float, grey: Optional[bool],
    mask_out: Optional[Path],
) -> dict:
    """Degrade one file; write the photo (and the mask when asked); return its record."""
    import numpy as np
    from PIL import Image

    from oldphoto.imageio import output_format, save_image
    from oldphoto.inputs import load_photo
    from oldphoto.training.degrade import PUBLISHED, Damage, degrade_photo

    output_format(dest)  # an unwritable extension fails before any work
    loaded = load_photo(src)
    pixels = np.asarray(loaded.image.convert("RGB"))
    damage = Damage(kinds=kinds) if scratches else None
    out, mask, ops = degrade_photo(pixels, seed, recipe=PUBLISHED.with_fade(fade), damage=damage, grey=grey)
    image = Image.fromarray(out, "RGB")
    if loaded.is_grey:
        image = image.convert("L")
    save_image(image, dest)
    record = {"input": str(src), "output": str(dest), "seed": seed, "operations": ops}
    if mask_out is not None:
        save_image(Image.fromarray(mask, "L"), mask_out, format="PNG")
        record["mask"] = str(mask_out)
    return record


def degrade(
    src: Path = typer.Argument(..., metavar="IN", help="A clean photo, or a folder of them.", show_default=False),
    dest: Path = typer.Argument(..., metavar="OUT", help="Output file (format from its extension), or folder for a folder input.", show_default=False),
    seed: int = typer.Option(0, "--seed", min=0, help="Random seed: the same seed gives the same bytes."),
    scratches: bool = typer.Option(False, "--scratches", help="Add structured damage (thin scratches, wide cracks, folds, emulsion loss, dust) and write its mask."),
    kinds: Optional[list[str]] = typer.Option(None, "--kind", metavar="<kind>", help="Damage kinds to draw (repeatable): scratches, cracks, folds, emulsion, dust. Default: all."),
    mask_out: Optional[Path] = typer.Option(
        None, "--mask-out", help="Mask file (white = damaged); for a folder, a folder of masks. Default: NAME_mask.png beside the output."
    ),
    fade: float = typer.Option(0.0, "--fade", min=0.0, max=1.0, help="Probability of fading (contrast, black lift, warm tint). Not in the published recipe."),
    grey: Optional[bool] = typer.Option(None, "--grey/--colour", help="Force grey or colour output. Default: grey with probability 0.1 as published."),
    json_lines: bool = typer.Option(False, "--json", help="Print one JSON record per photo (with the operations drawn)."),
) -> None:
    """Make synthetic old photos: the published degradation recipe, optionally with structured damage."""
    from oldphoto.errors import OldPhotoError
    from oldphoto.imageio import READABLE_EXTENSIONS
    from oldphoto.training.degrade import parse_kinds

    try:
        chosen = parse_kinds(kinds)
        if not src.exists():
            raise OldPhotoError(f"{src}: no such file or folder")
        if src.resolve() == dest.resolve():
            raise OldPhotoError(f"{dest}: refusing to overwrite the input")
        want_mask = scratches or mask_out is not None
        if src.is_dir():
            files = sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in READABLE_EXTENSIONS)
            if not files:
                raise OldPhotoError(f"{src}: no photos in this folder")
            jobs = []
            for p in files:
                rel = p.relative_to(src)
                out = dest / rel
                mask = (mask_out / rel).with_suffix(".png") if mask_out is not None else mask_path_for(out)
                jobs.append((p, out, photo_seed(seed, rel.as_posix()), mask if want_mask else None))
        else:
            mask = mask_out if mask_out is not None else mask_path_for(dest)
            jobs = [(src, dest, seed, mask if want_mask else None)]
        for p, out, s, mask in jobs:
            record = degrade_file(p, out, s, scratches=scratches, kinds=chosen, fade=fade, grey=grey, mask_out=mask)
            if json_lines:
                typer.echo(json.dumps(record))
            else:
                say("green", "degraded", f"{p} -> {out}" + (f" (mask {mask})" if mask else ""))
    except OldPhotoError as exc:
        fail(str(exc), 2 if exc.__class__.__name__ == "UsageError" else 1)
