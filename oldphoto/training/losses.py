"""Losses of the published training and the discriminators they need.

* Multi-scale PatchGAN (``reference-training.md`` §2.3): per scale five 4×4 convs with
  padding 2 (strides 2, 2, 2, 1, 1; widths ndf, 2ndf, 4ndf, 8ndf, 1), instance norm on
  layers 2–4, LeakyReLU 0.2, no sigmoid; scale k+1 sees a 3×3 average pool (stride 2,
  padding excluded) of scale k's input. Intermediate outputs are returned for feature matching.
* LSGAN: squared error to 1 (real) or 0 (fake), mean over elements, summed over scales.
* Feature matching: L1 between fake and (detached) real features of layers 1–4 of every
  scale, each weighted ``4 / (n_layers + 1) / num_D`` (times λ_feat, applied by the caller).
* KL of the "reduced" VAE: ``mean(μ²)`` (unit variance fixed).
* VGG-19 perceptual loss: relu1_1…relu5_1 with weights 1/32…1, images in [−1, 1] without
  ImageNet normalisation, as published. Only with weights given by the user: ImageNet VGG
  weights cannot be downloaded in every environment, and there is no substitute.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from oldphoto.errors import WeightsError


class PatchDiscriminator(nn.Module):
    """One PatchGAN scale; ``forward`` returns the outputs of every layer (last = the score map)."""

    def __init__(self, *, in_channels: int, ndf: int = 64, n_layers: int = 3, spectral: bool = False) -> None:
        super().__init__()
        wrap = nn.utils.spectral_norm if spectral else (lambda m: m)
        chans = [in_channels] + [ndf * min(2**i, 8) for i in range(n_layers + 1)]
        layers = []
        for i in range(n_layers + 1):
            stride = 2 if i < n_layers else 1
            unit: list[nn.Module] = [wrap(nn.Conv2d(chans[i], chans[i + 1], 4, stride, 2))]
            if i > 0:
                unit.append(nn.InstanceNorm2d(chans[i + 1]))
            unit.append(nn.LeakyReLU(0.2))
            layers.append(nn.Sequential(*unit))
        layers.append(nn.Sequential(wrap(nn.Conv2d(chans[-1], 1, 4, 1, 2))))
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for layer in self.layers:
            x = layer(x)
            feats.append(x)
        return feats


class MultiscaleDiscriminator(nn.Module):
    """``num_d`` PatchGAN scales with separate weights; returns one feature list per scale."""

    def __init__(self, *, in_channels: int, ndf: int = 64, n_layers: int = 3, num_d: int = 2, spectral: bool = False) -> None:
        super().__init__()
        self.n_layers, self.num_d = n_layers, num_d
        self.scales = nn.ModuleList(
            PatchDiscriminator(in_channels=in_channels, ndf=ndf, n_layers=n_layers, spectral=spectral) for _ in range(num_d)
        )

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        out = []
        for i, d in enumerate(self.scales):
            if i:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            out.append(d(x))
        return out


def lsgan(outputs: list[list[torch.Tensor]], real: bool) -> torch.Tensor:
    """Σ over scales of mean((score − target)²), target 1 for real, 0 for fake."""
    target = 1.0 if real else 0.0
    return sum(((feats[-1].float() - target) ** 2).mean() for feats in outputs)  # type: ignore[return-value]


def feature_matching(fake: list[list[torch.Tensor]], real: list[list[torch.Tensor]]) -> torch.Tensor:
    """Σ over scales and intermediate layers of mean|fake − real| · 4/(n_layers+1)/num_D.

    Multiplied by λ_feat (published 10) this gives the published per-layer weight.
    """
    num_d = len(fake)
    n_layers = len(fake[0]) - 2
    w = 4.0 / (n_layers + 1) / num_d
    total = fake[0][0].new_zeros((), dtype=torch.float32)
    for f_scale, r_scale in zip(fake, real):
        for f, r in zip(f_scale[:-1], r_scale[:-1]):
            total = total + w * (f.float() - r.detach().float()).abs().mean()
    return total


def kl(mu: torch.Tensor) -> torch.Tensor:
    """KL term of the reduced VAE as published: mean(μ²) (no ½, mean not sum)."""
    return (mu.float() ** 2).mean()


#: VGG-19 ``features`` layout: conv widths per block, "M" = 2×2 max pool (torchvision's indices).
_VGG19 = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512]
#: Slices ending after relu1_1, relu2_1, relu3_1, relu4_1, relu5_1, and their weights.
_VGG_CUTS = (2, 7, 12, 21, 30)
_VGG_WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)


def vgg19_features() -> nn.Sequential:
    """The convolutional part of VGG-19 with torchvision's module indices (``features.N``)."""
    layers: list[nn.Module] = []
    cin = 3
    for v in _VGG19:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, int(v), 3, padding=1), nn.ReLU()]
            cin = int(v)
    return nn.Sequential(*layers)


class VGGLoss(nn.Module):
    """Published VGG-19 perceptual loss from a user-supplied ImageNet VGG-19 file.

    Accepts torchvision's ``vgg19`` state dict (``features.N.weight``; classifier keys are
    ignored) as ``.safetensors`` or ``.pth`` (read with ``weights_only=True``).
    """

    def __init__(self, path: Path | str) -> None:
        super().__init__()
        path = Path(path)
        if not path.is_file():
            raise WeightsError(f"{path}: no such VGG-19 weights file")
        try:
            if path.suffix == ".safetensors":
                from safetensors.torch import load_file

                state = load_file(str(path))
            else:
                state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # any unreadable file is one line for the user
            raise WeightsError(f"{path}: unreadable VGG-19 weights ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
        features = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
        net = vgg19_features()
        try:
            net.load_state_dict(features, strict=True)
        except RuntimeError as exc:
            raise WeightsError(f"{path}: not a VGG-19 state dict ({str(exc).splitlines()[0]})") from None
        net.requires_grad_(False).eval()
        self.slices = nn.ModuleList(net[a:b] for a, b in zip((0, *_VGG_CUTS[:-1]), _VGG_CUTS))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        total = x.new_zeros((), dtype=torch.float32)
        for s, w in zip(self.slices, _VGG_WEIGHTS):
            x, y = s(x), s(y)
            total = total + w * (x.float() - y.detach().float()).abs().mean()
        return total


def init_weights(module: nn.Module) -> nn.Module:
    """The published ``weights_init``: every conv and transposed-conv weight ~ N(0, 0.02)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            w = m.weight_orig if hasattr(m, "weight_orig") else m.weight
            nn.init.normal_(w, 0.0, 0.02)
    return module
