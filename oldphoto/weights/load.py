"""Our checkpoint -> the built network bundle with its weights loaded, on the CPU.

:func:`load_model` is what ``Restorer.model`` calls: it resolves the checkpoint
(:mod:`oldphoto.weights.resolve`), builds the networks its metadata names
(:func:`oldphoto.models.build_bundle`) and loads the tensors strictly. Placing the bundle on a
device and choosing kernels stays with the caller.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from oldphoto.errors import WeightsError
from oldphoto.models import build_bundle
from oldphoto.weights.checkpoint import load_checkpoint
from oldphoto.weights.resolve import resolve_weights


def load_bundle(folder: Path | str, name: str) -> tuple[dict[str, Any], nn.ModuleDict]:
    """Return ``(meta, bundle)`` of model ``name`` from the checkpoint folder ``folder``."""
    meta, tensors = load_checkpoint(folder, name)
    bundle = build_bundle(meta["networks"])
    try:
        bundle.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"{folder}/{name}.safetensors: does not match its config ({exc})") from None
    return meta, bundle


def load_model(
    name: str, *, weights_dir: Path | str | None = None, repo: str | None = None, revision: str | None = None
) -> tuple[dict[str, Any], nn.ModuleDict]:
    """Return ``(meta, bundle)`` of model ``name`` from ``weights_dir``, the cache or a download."""
    folder = resolve_weights(name, weights_dir=weights_dir, repo=repo, revision=revision)
    return load_bundle(folder, name)
