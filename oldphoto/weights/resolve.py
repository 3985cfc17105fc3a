"""Where a model's checkpoint is, in the one order every caller uses: ``--weights DIR`` -> our cache -> a download.

:func:`find_here` answers without the network (the face stage's default asks it);
:func:`resolve_weights` downloads when nothing is here.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from oldphoto.errors import WeightsError
from oldphoto.weights.cache import cached_folder
from oldphoto.weights.cards import card_for
from oldphoto.weights.checkpoint import has_checkpoint
from oldphoto.weights.download import download


def find_here(
    name: str,
    *,
    weights_dir: Path | str | None = None,
    repo: str | None = None,
    revision: str | None = None,
    card: Mapping[str, Any] | None = None,
) -> Path | None:
    """The folder already holding model ``name``, or None: ``weights_dir`` when given (and only it), else the cache."""
    if weights_dir is not None:
        return Path(weights_dir) if has_checkpoint(weights_dir, name) else None
    return cached_folder(name, repo=repo, revision=revision, card=card)


def resolve_weights(
    name: str,
    *,
    weights_dir: Path | str | None = None,
    repo: str | None = None,
    revision: str | None = None,
    card: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> Path:
    """Return the folder holding ``NAME.safetensors`` + ``NAME.json``, downloading it if needed.

    Order: ``weights_dir`` (must hold the model) -> our cache -> the card's sources in order.
    Raises WeightsError with one line naming the model and what to do when nothing works.
    """
    if weights_dir is None:
        card = card_for(name, card)
    found = find_here(name, weights_dir=weights_dir, repo=repo, revision=revision, card=card)
    if found is not None:
        return found
    if weights_dir is not None:
        raise WeightsError(
            f"{weights_dir}: no '{name}' model ({name}.safetensors + {name}.json); import it with "
            "'oldphoto weights import-official' or omit --weights to download it"
        )
    return download(name, repo=repo, revision=revision, card=card, progress=progress)
