"""The VAE encoder (of VAE_A) and decoder (of VAE_B) of the global restoration stage.

Both are ``nn.Sequential`` subclasses whose indices are the published ones
(``encoder.10.conv_block.5.weight`` in the published file is ``10.conv_block.5.weight`` here).
Every layer is local, so each network is a single :class:`~oldphoto.networks.steps.Local` step.

Two options exist for the bundled lite model and are off in the published networks:
``norm="none"`` drops the instance norms, and ``stem="s2"`` replaces the full-resolution 7×7
conv (and the decoder's 7×7 conv) with a 2×2 stride-2 conv (a 2×2 stride-2 transposed conv):
a learnt pixel-unshuffle (pixel-shuffle), so every other layer works at half resolution, at a
quarter of the cost per layer, while the global residual keeps full-resolution detail.
"""

from __future__ import annotations

import torch
from torch import nn

from oldphoto.networks.blocks import ReflectionPad, ResBlock, norm_layers, relu
from oldphoto.networks.steps import Step, local, run_steps


STEMS = ("conv7", "s2")


def _check_stem(stem: str) -> None:
    if stem not in STEMS:
        raise ValueError(f"stem must be one of {STEMS}, not {stem!r}")


class VAEEncoder(nn.Sequential):
    """Image (in [-1, 1]) to latent: 7×7 conv, ``n_downsample`` stride-2 4×4 convs, res blocks."""

    def __init__(
        self,
        *,
        in_channels: int = 3,
        ngf: int = 64,
        n_downsample: int = 2,
        n_blocks: int = 4,
        norm: str = "instance",
        stem: str = "conv7",
    ) -> None:
        _check_stem(stem)
        first: list[nn.Module] = [ReflectionPad(3), nn.Conv2d(in_channels, ngf, 7)] if stem == "conv7" else [
            nn.Conv2d(in_channels, ngf, 2, 2)
        ]
        layers: list[nn.Module] = [*first, *norm_layers(ngf, norm), relu()]
        for _ in range(n_downsample):
            layers += [nn.Conv2d(ngf, ngf, 4, 2, 1), *norm_layers(ngf, norm), relu()]
        layers += [ResBlock(ngf, norm) for _ in range(n_blocks)]
        super().__init__(*layers)

    def steps(self) -> list[Step]:
        return [local(self)]

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return run_steps(self.steps(), x, mask)


class VAEDecoder(nn.Sequential):
    """Latent to image: res blocks, ``n_downsample`` 4×4 stride-2 transposed convs, 7×7 conv, tanh."""

    def __init__(
        self,
        *,
        out_channels: int = 3,
        ngf: int = 64,
        n_downsample: int = 2,
        n_blocks: int = 4,
        norm: str = "instance",
        stem: str = "conv7",
    ) -> None:
        _check_stem(stem)
        layers: list[nn.Module] = [ResBlock(ngf, norm) for _ in range(n_blocks)]
        for _ in range(n_downsample):
            layers += [nn.ConvTranspose2d(ngf, ngf, 4, 2, 1), *norm_layers(ngf, norm), relu()]
        if stem == "conv7":
            layers += [ReflectionPad(3), nn.Conv2d(ngf, out_channels, 7)]
        else:
            layers += [nn.ConvTranspose2d(ngf, out_channels, 2, 2)]
        layers += [nn.Tanh()]
        super().__init__(*layers)

    def steps(self) -> list[Step]:
        return [local(self)]

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return run_steps(self.steps(), x, mask)
