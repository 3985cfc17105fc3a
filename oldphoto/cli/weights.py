"""``oldphoto weights …``: import the published checkpoints, download, list, verify."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from oldphoto.cli.common import Command, console, escape, fail, say, typer_app
from oldphoto.errors import human_bytes

app = typer_app(help="Get, convert and check model weights.", no_args_is_help=True)


@app.command("import-official", cls=Command, short_help="Convert the published .pth checkpoints to oldphoto's format.")
def import_official(
    src: Path = typer.Argument(..., metavar="CHECKPOINTS", help="Folder laid out like the published 'checkpoints/' (or the folder holding it)."),
    dest: Path = typer.Argument(..., metavar="DEST", help="Folder to write oldphoto checkpoints into (use it with --weights)."),
    strict: bool = typer.Option(False, "--strict", help="Treat unexpected keys in the published files as errors."),
) -> None:
    """Convert the published .pth checkpoints into oldphoto's safetensors format.

    \b
    Example:
      oldphoto weights import-official ~/Downloads/checkpoints ./weights-local
    """
    from oldphoto.errors import OldPhotoError
    from oldphoto.weights.importer import import_official as run_import

    try:
        report = run_import(src, dest, strict=strict)
    except OldPhotoError as exc:
        fail(str(exc))
    for warning in report.warnings:
        say("yellow", "warning", warning)
    for name, path in report.imported.items():
        console.print(f"imported {name} -> {path}", highlight=False)
    for name, why in report.missing.items():
        console.print(f"[dim]not imported {name}: {why}[/dim]", highlight=False)
    if not report.imported:
        fail(f"{src}: no model could be imported (see the reasons above)")


def _names(names: list[str] | None) -> list[str]:
    from oldphoto.weights.cards import card_names

    known = card_names()
    chosen = list(names) if names else list(known)
    unknown = [n for n in chosen if n not in known]
    if unknown:
        fail(f"unknown model {unknown[0]!r} (known: {', '.join(known)})")
    return chosen


@app.command("download", cls=Command, short_help="Download, convert and cache model weights.")
def download(
    models: list[str] = typer.Argument(None, metavar="MODEL", help="Models to fetch, e.g. quality scratch hr detector face256 face512 (default: every model)."),
    everything: bool = typer.Option(False, "--all", help="Fetch every model (all modes, the detector and both face models), e.g. for an offline machine."),
    repo: str = typer.Option(None, "--repo", envvar="OLDPHOTO_REPO", help="Hub repository to try first: a fork or mirror of converted weights, or one of the cards' published-layout repositories."),
    revision: str = typer.Option(None, "--revision", help="Branch, tag or commit of the first repository tried (a commit makes the download reproducible)."),
    force: bool = typer.Option(False, "--force", help="Download again even if cached."),
) -> None:
    """Download, convert and cache model weights (resolution order: cache, then the Hub).

    Each model says what it fetches and how big before it starts. Then copy the folder that
    'oldphoto weights path' prints to the same place on an offline machine (or point
    OLDPHOTO_CACHE at it there).

    \b
    Example:
      oldphoto weights download --all
    """
    from oldphoto.errors import OldPhotoError
    from oldphoto.weights.cache import cache_root, cached_folder
    from oldphoto.weights.download import download as fetch

    if everything and models:
        fail("name models or pass --all, not both", code=2)
    failed = 0
    for name in _names(None if everything else models):
        try:
            folder = None if force else cached_folder(name, repo=repo, revision=revision)
            folder = folder or fetch(name, repo=repo, revision=revision, force=force)
        except OldPhotoError as exc:
            console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
            failed += 1
            continue
        typer.echo(f"{name}: {folder}")
    say("dim", "note", f"the cache is {cache_root()}: copy it to the same place on an offline machine, or set OLDPHOTO_CACHE there")
    if failed:
        raise typer.Exit(1)


@app.command("list", cls=Command, short_help="Every known model: where it is, its size, its sources.")
def list_models(
    weights: Path = typer.Option(None, "--weights", help="Also look in this folder of oldphoto checkpoints."),
) -> None:
    """Show every known model: where it is, its size, whether it was verified, what it came from, and its sources."""
    from rich.console import Console

    from oldphoto.weights.cache import weights_status

    out = Console(highlight=False)
    for row in weights_status(weights_dir=weights):
        verified = {True: "yes", None: "unknown" if row["present"] else "-", False: "NO"}[row["verified"]]
        details = [("in", row["path"])] if row["path"] else []
        if row.get("repo"):
            details.append(("from", f"{row['repo']}@{(row['commit'] or 'unknown')[:12]}"))
        _print_model(out, row["name"], row["where"] or "no", verified, human_bytes(row["size"]), details, row["sources"])
    _print_lite(out)


def _print_model(
    out: Any, name: str, where: str, verified: str, size: str, details: list[tuple[str, str]], sources: list[str]
) -> None:
    """One model as a few lines: name, where, verified and size; then what it is and where it comes from.

    A line that does not fit the terminal wraps at a space, so repository names and paths stay
    whole (each source on its own line) where a table's narrow columns would cut them mid-word.
    """
    from rich.padding import Padding
    from rich.text import Text

    out.print(Text(f"{name:<9} {where:<8} verified: {verified:<8} size: {size}"), no_wrap=True, overflow="ignore")
    for label, value in details:
        out.print(Padding(Text(f"{label} {value}"), (0, 0, 0, 2), expand=False))
    if sources:
        out.print(Padding(Text("sources, tried in order:" if len(sources) > 1 else "source:"), (0, 0, 0, 2), expand=False))
        for source in sources:
            out.print(Padding(Text(source), (0, 0, 0, 4), expand=False))


def _print_lite(out: Any) -> None:
    """The bundled lite model: inside the package, checked against its card's sha256."""
    from oldphoto.weights.choice import lite_status

    lite = lite_status()
    _print_model(
        out, "lite", "package" if lite["present"] else "no", "yes" if lite["verified"] else "NO",
        human_bytes(lite["size"]) if lite["present"] else "-",
        [("in", lite["path"]), ("bundled:", f"{', '.join(lite['models'])}; --model lite, or auto without published weights")], [],
    )


@app.command("verify", cls=Command, short_help="Re-check cached weights against their record and the Hub.")
def verify(
    models: list[str] = typer.Argument(None, metavar="MODEL", help="Models to check (default: every cached model)."),
) -> None:
    """Re-check cached weights: re-hash them, and ask the Hub whether it still serves what was downloaded.

    Weights without a published sha256 were trusted on first use: the commit and the sha256 of
    every file read were recorded then, and are what this checks against. With HF_HUB_OFFLINE=1
    only the local copies are re-hashed.
    """
    from oldphoto.weights.cache import verify_cached

    bad = 0
    for name in _names(models):
        folder, ok, detail = verify_cached(name)
        if folder is None:
            typer.echo(f"{name}: not cached")
            continue
        if not ok:
            bad += 1
            console.print(f"[red]error:[/red] {escape(f'{name}: {folder}: {detail}')}", highlight=False, soft_wrap=True)
        else:
            typer.echo(f"{name}: {detail} ({folder})")
    if bad:
        raise typer.Exit(1)


@app.command("path", cls=Command, short_help="Print where weights are cached, or one model's folder.")
def path(
    model: str = typer.Argument(None, metavar="MODEL", help="A model name; without it, print the cache folder."),
) -> None:
    """Print where weights are cached (OLDPHOTO_CACHE, else <HF_HOME>/oldphoto), or one model's folder."""
    from oldphoto.errors import OldPhotoError
    from oldphoto.weights.cache import cache_root, cached_folder

    if model is None:
        typer.echo(str(cache_root()))
        say("dim", "note", "to run offline elsewhere, copy this folder to the same place there (or set OLDPHOTO_CACHE to the copy)")
        return
    try:
        folder = cached_folder(model)
    except OldPhotoError as exc:
        fail(str(exc))
    if folder is None:
        fail(f"{model}: not cached; fetch it with 'oldphoto weights download {model}'")
    typer.echo(str(folder))
