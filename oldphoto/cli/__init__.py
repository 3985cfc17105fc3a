"""The ``oldphoto`` command line: a thin Typer layer over :class:`oldphoto.Restorer`.

Sub-commands live in sibling modules (``restore``, ``weights``, ``info``, ``ui``...); this module only
assembles them. Nothing here imports torch at start-up, so ``oldphoto --help`` stays fast.
"""

from __future__ import annotations

import typer

from oldphoto import __version__
from oldphoto.cli import degrade, info, inspect, restore, train, ui, weights
from oldphoto.cli.common import Command, typer_app

app = typer_app(
    name="oldphoto",
    help="Bring old photographs back to life (a port of 'Bringing Old Photos Back to Life').",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"oldphoto {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Restore old photographs: faded prints, noise, scratches and folds."""


app.command("restore", cls=Command, short_help="Restore old photos: one file, or a whole folder.")(restore.restore)
app.command("info", cls=Command, short_help="Versions, devices, and where weights are looked for.")(info.info)
app.command("inspect", cls=Command, short_help="Show how a restored file was made (its provenance).")(inspect.inspect)
app.command("degrade", cls=Command, short_help="Make synthetic old photos (and damage masks).")(degrade.degrade)
app.command("train", cls=Command, short_help="Train one stage of the restoration networks.")(train.train)
app.command("ui", cls=Command, short_help="Restore photos in your web browser.")(ui.ui)
app.add_typer(weights.app, name="weights")


def main() -> None:
    """Console-script entry point."""
    app()
