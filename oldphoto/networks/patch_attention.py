"""Multi-scale patch attention of high-resolution scratch mode (published inference path).

Each damaged p×p patch of the features is replaced by the most similar (cosine) undamaged
patch, then a 3×3 conv fuses the input, the composed map and the mask. The search runs in
chunks of query patches so the query×key similarity matrix is never held whole.

Difference from the published code, on purpose: queries are chosen per image of a batch
(the published code takes batch element 0's mask for every image). For one image, which is
how the published code is run, the two are identical.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from oldphoto.networks.blocks import ResBlock
from oldphoto.networks.steps import Global, Local, Step, run_steps

#: Query patches handled per similarity block, at most; bounds the block to CHUNK × keys floats.
QUERY_CHUNK = 1024
#: Largest similarity block in elements (64 MiB of float32), whatever the number of keys.
BLOCK_ELEMENTS = 1 << 24


def damaged_map(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear-downsample the image-size mask to ``size`` and mark every > 0 value as 1."""
    mb = F.interpolate(mask, size=size, mode="bilinear", align_corners=False)
    return (mb > 0).to(mask.dtype)


def nearest_patch_compose(x: torch.Tensor, mb: torch.Tensor, patch: int, threshold: float) -> torch.Tensor:
    """Replace each query patch of ``x`` (C×h×w) by its most similar key patch.

    A patch is a query when the mean of ``mb`` (1×h×w) over it is > ``threshold``. With no
    query the input is returned unchanged; otherwise the remainder strip that belongs to no
    full patch is zero, as in the published code.
    """
    c, h, w = x.shape
    ph, pw = h // patch, w // patch
    if ph == 0 or pw == 0:
        return x
    area = x[:, : ph * patch, : pw * patch]
    patches = area.reshape(c, ph, patch, pw, patch).permute(1, 3, 0, 2, 4).reshape(ph * pw, -1)
    m = mb[:, : ph * patch, : pw * patch].reshape(ph, patch, pw, patch).mean(dim=(1, 3)).reshape(-1)
    is_query = m > threshold
    if not bool(is_query.any()) or bool(is_query.all()):
        return x
    q_idx = is_query.nonzero().squeeze(1)
    k_idx = (~is_query).nonzero().squeeze(1)
    keys = F.normalize(patches[k_idx], dim=1)
    best = torch.empty_like(q_idx)
    step = max(1, min(QUERY_CHUNK, BLOCK_ELEMENTS // k_idx.numel()))
    for start in range(0, q_idx.numel(), step):
        chunk = q_idx[start : start + step]
        sim = F.normalize(patches[chunk], dim=1) @ keys.T
        best[start : start + step] = k_idx[sim.argmax(dim=1)]
    composed = patches.clone()
    composed[q_idx] = patches[best]
    out = x.new_zeros(x.shape)
    out[:, : ph * patch, : pw * patch] = (
        composed.reshape(ph, pw, c, patch, patch).permute(2, 0, 3, 1, 4).reshape(c, ph * patch, pw * patch)
    )
    return out


class PatchAttention(nn.Module):
    """One scale of patch attention: ``F_Combine(concat[z, composed, mask])``.

    Three steps: the residual block and the fusion conv are local; only the nearest-patch
    search (:meth:`search`) needs the whole map.
    """

    def __init__(self, *, channels: int = 512, patch: int = 8, threshold: float = 0.6) -> None:
        super().__init__()
        self.patch = patch
        self.threshold = threshold
        self.res_block = nn.Sequential(ResBlock(channels))
        self.F_Combine = nn.Conv2d(2 * channels + 1, channels, 3, 1, 1)

    def search(self, x: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The composed map (damaged patches of ``x`` replaced) and the damage map at ``x``'s size.

        The damage map is computed where the mask is and then follows ``x``.
        """
        if mask is None:
            raise ValueError("patch attention needs a damage mask")
        mb = damaged_map(mask.to(dtype=x.dtype), x.shape[-2:]).to(x.device)
        composed = [nearest_patch_compose(x[i], mb[i], self.patch, self.threshold) for i in range(x.shape[0])]
        return (composed[0][None] if len(composed) == 1 else torch.stack(composed)), mb

    def steps(self) -> list[Step]:
        """Residual block, search (whole map; may run in host memory), fusion over ``[z, composed, mb]``.

        The search holds the map, its patches and the composed copy (the planner counts five
        maps; the block's input ``z`` is held meanwhile).
        """
        return [
            Local(tuple(self.res_block), writes=("features",)),
            Global(self.search, reads=("features",), writes=("composed", "damaged"),
                   floats=5 * self.F_Combine.out_channels, movable=True),
            Local((self.F_Combine,), reads=("x", "composed", "damaged")),
        ]

    def forward(self, z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return run_steps(self.steps(), z, mask)
