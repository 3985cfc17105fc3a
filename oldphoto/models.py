"""Build networks and per-mode bundles from the configs recorded in cards and checkpoints."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from oldphoto.errors import WeightsError
from oldphoto.networks.mapping import MappingPatchAttention, MappingQuality, MappingScratch
from oldphoto.networks.steps import Step
from oldphoto.networks.unet import ScratchUNet
from oldphoto.networks.vae import VAEDecoder, VAEEncoder

ARCHITECTURES: dict[str, type[nn.Module]] = {
    "vae_encoder": VAEEncoder,
    "vae_decoder": VAEDecoder,
    "mapping_quality": MappingQuality,
    "mapping_scratch": MappingScratch,
    "mapping_patch_attention": MappingPatchAttention,
    "scratch_unet": ScratchUNet,
}


def register_architecture(name: str, cls: type[nn.Module]) -> None:
    """Make an architecture buildable by name (the face extra registers its generator)."""
    ARCHITECTURES[name] = cls


def build_network(arch: str, config: Mapping[str, Any]) -> nn.Module:
    """Instantiate architecture ``arch`` with keyword arguments ``config`` (weights random)."""
    if arch == "spade_face_generator" and arch not in ARCHITECTURES:
        from oldphoto.networks.spade import SPADEGenerator

        register_architecture(arch, SPADEGenerator)
    try:
        cls = ARCHITECTURES[arch]
    except KeyError:
        raise WeightsError(f"unknown architecture {arch!r}") from None
    try:
        net = cls(**config)
    except TypeError as exc:
        raise WeightsError(f"bad config for architecture {arch!r}: {exc}") from None
    # What it was built from: training exports it into the card (``networks.<name>.config``).
    net.config = dict(config)
    return net


def build_bundle(networks: Mapping[str, Mapping[str, Any]]) -> nn.ModuleDict:
    """Build every network of a mode ({name: {"arch", "config"}}) into one ``ModuleDict``.

    The bundle's state-dict keys are ``<network>.<key>``, which is how checkpoints store them.
    """
    return nn.ModuleDict({name: build_network(spec["arch"], spec["config"]) for name, spec in networks.items()})


#: The networks of a restoration bundle in the order they run, each with the name of what it
#: produces: the photo's latent, the latent mapped to clean photos, the decoded photo.
RESTORATION_ORDER = {"encoder": "latent", "mapping": "mapped", "decoder": "output"}


def restoration_steps(bundle: nn.ModuleDict) -> list[Step]:
    """Every step of a restoration bundle, encoder → mapping → decoder (what the tiled executor runs)."""
    return [step for name in RESTORATION_ORDER for step in bundle[name].steps()]
