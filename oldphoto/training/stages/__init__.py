"""The training stages: what each trains, on which batches, with which losses and optimisers.

Published method (``reference-training.md`` §§3–5, 9): VAE_A (real + synthetic old photos,
with a latent discriminator pulling real-old codes towards synthetic ones), VAE_B (clean
photos), then the quality mapping between the frozen VAEs. Networks are the inference ones,
built by :func:`oldphoto.models.build_network`, so what a stage exports is what ``restore``
loads. Every loss is switchable by its weight (0 = off); the defaults are the published ones,
except the pixel L1 of the VAEs, which the paper has (α = 10) and the published code lacks:
there it is replaced by the VGG loss, which cannot run without ImageNet weights.

One module per stage family: :mod:`.config` (the run's settings and published loss weights),
:mod:`.base` (the shared :class:`Stage`), :mod:`.vae`, :mod:`.mapping` and :mod:`.detector`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from oldphoto.errors import UsageError
from oldphoto.training.stages.config import DEFAULT_WEIGHTS, STAGES, TrainConfig

if TYPE_CHECKING:
    import torch

    from oldphoto.training.stages.base import Stage
    from oldphoto.training.stages.detector import DetectorStage
    from oldphoto.training.stages.mapping import MappingStage, ScratchMappingStage
    from oldphoto.training.stages.vae import VAEStage

__all__ = ["DEFAULT_WEIGHTS", "STAGES", "DetectorStage", "MappingStage", "ScratchMappingStage", "Stage", "TrainConfig", "VAEStage", "make_stage"]

#: The torch-backed names, imported on first use, so that reading a :class:`TrainConfig` (the
#: command line builds its options from it at start-up) does not import torch.
_LAZY = {"Stage": "base", "DetectorStage": "detector", "MappingStage": "mapping", "ScratchMappingStage": "mapping", "VAEStage": "vae"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_stage(cfg: TrainConfig, device: torch.device) -> Stage:
    """The stage ``cfg.stage`` names, built on ``device``; an unknown name is a usage error."""
    from oldphoto.training.stages.detector import DetectorStage
    from oldphoto.training.stages.mapping import MappingStage, ScratchMappingStage
    from oldphoto.training.stages.vae import VAEStage

    if cfg.stage not in STAGES:
        raise UsageError(f"unknown stage {cfg.stage!r} (choose {', '.join(STAGES)})")
    if cfg.stage == "mapping":
        return MappingStage(cfg, device)
    if cfg.stage == "mapping-scratch":
        return ScratchMappingStage(cfg, device)
    if cfg.stage == "detector":
        return DetectorStage(cfg, device)
    return VAEStage(cfg, device, cfg.stage[-1])
