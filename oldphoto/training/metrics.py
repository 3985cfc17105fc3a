"""Image quality scores for validation and benchmarks: PSNR and SSIM on [0, 1] images."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two images in [0, 1] (any shape); 100 for identical images."""
    mse = float(((a.double() - b.double()) ** 2).mean())
    return 100.0 if mse == 0 else 10 * math.log10(1.0 / mse)


def _gauss(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean SSIM (Wang et al. 2004: 11-tap Gaussian σ 1.5, K1 0.01, K2 0.03) of two C×H×W
    images in [0, 1], averaged over channels; only windows fully inside the image count."""
    a, b = a.double()[:, None], b.double()[:, None]
    g = _gauss()
    size = g.numel()
    if min(a.shape[-2:]) < size:
        raise ValueError(f"SSIM needs images of at least {size}×{size} pixels")

    def blur(t: torch.Tensor) -> torch.Tensor:
        t = F.conv2d(t, g.view(1, 1, 1, -1))
        return F.conv2d(t, g.view(1, 1, -1, 1))

    c1, c2 = 0.01**2, 0.03**2
    ma, mb = blur(a), blur(b)
    va = blur(a * a) - ma**2
    vb = blur(b * b) - mb**2
    cov = blur(a * b) - ma * mb
    s = ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2))
    return float(s.mean())


def stretch(y: torch.Tensor) -> torch.Tensor:
    """The restore path's min–max stretch of a [0, 1] image (see ``pipeline.finish``)."""
    lo, hi = y.min(), y.max()
    return (y - lo) / torch.clamp(hi - lo, min=1e-5)
