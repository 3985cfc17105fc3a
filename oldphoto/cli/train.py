"""``oldphoto train STAGE``: train the restoration networks (see :mod:`oldphoto.training`)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Train the restoration networks (stages vae-a, vae-b, mapping).", no_args_is_help=True)
