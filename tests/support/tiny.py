"""Tiny random-weight models that go through the real import path, for fast end-to-end tests.

The cards are the shipped ones with small configs; the weights are random and produce
noise, never a restoration. ``make_tiny_weights`` writes published-layout ``.pth`` files and
imports them with ``import_official``, exactly as a user's real checkpoints would be.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from oldphoto.weights.cards import RESTORATION_MODES, load_card

TINY_CONFIGS: dict[str, dict[str, Any]] = {
    "vae_encoder": {"in_channels": 3, "ngf": 8, "n_downsample": 2, "n_blocks": 2},
    "vae_decoder": {"out_channels": 3, "ngf": 8, "n_downsample": 2, "n_blocks": 2},
    "mapping_quality": {"in_channels": 8, "base": 8, "width": 16, "n_blocks": 2},
    "mapping_scratch": {"in_channels": 8, "base": 8, "width": 16, "n_blocks": 2, "nl_blocks": 1},
    "mapping_patch_attention": {"in_channels": 8, "base": 8, "width": 16, "patch_sizes": [8, 4, 2], "threshold": 0.6},
    "scratch_unet": {"in_channels": 1, "out_channels": 1, "depth": 4, "wf": 3},
    "spade_face_generator": {"ngf": 2, "label_channels": 3, "hidden": 4},
}
TINY_MODELS = (*RESTORATION_MODES, "detector", "face256", "face512")


def tiny_cards() -> dict[str, dict[str, Any]]:
    """The shipped cards of the restoration modes and the detector, with tiny configs."""
    cards = {}
    for name in TINY_MODELS:
        card = copy.deepcopy(load_card(name))
        for spec in card["networks"].values():
            spec["config"] = {**spec["config"], **copy.deepcopy(TINY_CONFIGS[spec["arch"]])}
        cards[name] = card
    return cards


def write_published_layout(root: Path, cards: dict[str, dict[str, Any]] | None = None, seed: int = 0) -> Path:
    """Write random published-format ``.pth`` files for ``cards`` under ``root``; return ``root``."""
    import torch

    from oldphoto.models import build_network

    cards = cards if cards is not None else tiny_cards()
    files: dict[str, dict[str, Any]] = {}
    containers: dict[str, str | None] = {}
    torch.manual_seed(seed)
    for card in cards.values():
        for spec in card["networks"].values():
            state = files.setdefault(spec["source"], {})
            containers[spec["source"]] = spec.get("container_key")
            prefix = spec.get("source_prefix", "")
            if any(k.startswith(prefix) for k in state) and prefix:
                continue
            net = build_network(spec["arch"], spec["config"])
            state.update({prefix + k: v.clone() for k, v in net.state_dict().items()})
    for rel, state in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        container = containers[rel]
        torch.save({container: state} if container else state, path)
    return root


def make_tiny_weights(dest: Path, *, seed: int = 0) -> Path:
    """Import tiny random-weight checkpoints of every mode and the detector into ``dest``."""
    from oldphoto.weights.importer import import_official

    src = write_published_layout(dest.parent / f"{dest.name}-published", tiny_cards(), seed=seed)
    report = import_official(src, dest, cards=tiny_cards())
    assert set(report.imported) == set(TINY_MODELS), report.missing
    return dest
