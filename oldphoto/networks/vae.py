"""The VAE encoder (of VAE_A) and decoder (of VAE_B) of the global restoration stage.

Both are ``nn.Sequential`` subclasses whose indices are the published ones
(``encoder.10.conv_block.5.weight`` in the published file is ``10.conv_block.5.weight`` here).
Every layer is local, so each network is a single :class:`~oldphoto.networks.steps.Local` step.
"""

from __future__ import annotations

import torch
from torch import nn

from oldphoto.networks.blocks import ReflectionPad, ResBlock, instance_norm, relu
from oldphoto.networks.steps import Step, local, run_steps


class VAEEncoder(nn.Sequential):
    """Image (in [-1, 1]) to latent: 7×7 conv, ``n_downsample`` stride-2 4×4 convs, res blocks."""

    def __init__(self, *, in_channels: int = 3, ngf: int = 64, n_downsample: int = 2, n_blocks: int = 4) -> None:
        layers: list[nn.Module] = [
            ReflectionPad(3),
            nn.Conv2d(in_channels, ngf, 7),
            instance_norm(ngf),
            relu(),
        ]
        for _ in range(n_downsample):
            layers += [nn.Conv2d(ngf, ngf, 4, 2, 1), instance_norm(ngf), relu()]
        layers += [ResBlock(ngf) for _ in range(n_blocks)]
        super().__init__(*layers)

    def steps(self) -> list[Step]:
        return [local(self)]

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return run_steps(self.steps(), x, mask)


class VAEDecoder(nn.Sequential):
    """Latent to image: res blocks, ``n_downsample`` 4×4 stride-2 transposed convs, 7×7 conv, tanh."""

    def __init__(self, *, out_channels: int = 3, ngf: int = 64, n_downsample: int = 2, n_blocks: int = 4) -> None:
        layers: list[nn.Module] = [ResBlock(ngf) for _ in range(n_blocks)]
        for _ in range(n_downsample):
            layers += [nn.ConvTranspose2d(ngf, ngf, 4, 2, 1), instance_norm(ngf), relu()]
        layers += [ReflectionPad(3), nn.Conv2d(ngf, out_channels, 7), nn.Tanh()]
        super().__init__(*layers)

    def steps(self) -> list[Step]:
        return [local(self)]

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return run_steps(self.steps(), x, mask)
