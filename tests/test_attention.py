"""The scratch modes' global blocks against naive reference implementations."""

from __future__ import annotations

import pytest
import torch

from oldphoto.networks import patch_attention
from oldphoto.networks.nonlocal_block import PartialNonLocal, attention_heads, clear_positions, renormalised_attention
from oldphoto.networks.patch_attention import PatchAttention, nearest_patch_compose


def naive_published(q: torch.Tensor, k: torch.Tensor, g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The published computation with the full N×N matrix (B×N×C inputs, B×N×1 weights)."""
    a = torch.softmax(q @ k.transpose(1, 2), dim=-1)
    a = a * v.transpose(1, 2)
    a = a / a.sum(dim=-1, keepdim=True).clamp_min(1e-12)
    return a @ g


def _heads(b: int, n: int, c: int, seed: int, scale: float = 1.0) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(b, n, c, generator=gen, dtype=torch.float64) * scale for _ in range(3))


def _fused(q: torch.Tensor, k: torch.Tensor, g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    def image(t: torch.Tensor) -> torch.Tensor:
        return t.transpose(1, 2).unsqueeze(-1)

    return renormalised_attention(attention_heads(image(q)), attention_heads(image(k)), attention_heads(image(g), v))


@pytest.mark.parametrize("scale", [0.1, 1.0, 3.0])
def test_fused_attention_equals_naive_published(scale: float) -> None:
    q, k, g = _heads(2, 150, 16, seed=1, scale=scale)
    v = (torch.rand(2, 150, 1, generator=torch.Generator().manual_seed(2)) > 0.4).double()
    assert torch.allclose(_fused(q, k, g, v), naive_published(q, k, g, v), atol=1e-10, rtol=1e-8)


def test_no_clear_position_gives_zero() -> None:
    q, k, g = _heads(1, 40, 8, seed=3)
    v = torch.zeros(1, 40, 1, dtype=torch.float64)
    assert torch.count_nonzero(_fused(q, k, g, v)) == 0


def test_underflowing_clear_keys_are_damped_as_published() -> None:
    # Large logits push the clear keys' softmax mass below 1e-12, where the published clamp
    # shrinks y instead of renormalising; a -inf-masked kernel would not reproduce that.
    q, k, g = _heads(1, 64, 8, seed=4, scale=4.0)
    v = torch.zeros(1, 64, 1, dtype=torch.float64)
    v[0, :3] = 1
    naive = naive_published(q, k, g, v)
    mass = (torch.softmax(q @ k.transpose(1, 2), -1) * v.transpose(1, 2)).sum(-1)
    assert (mass < 1e-12).any(), "test needs queries whose clear keys underflow"
    assert torch.allclose(_fused(q, k, g, v), naive, atol=1e-12, rtol=1e-6)


def test_clear_positions_follow_the_published_rule() -> None:
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., 5, 9] = 1  # one damaged pixel touches its latent cell (and bilinear neighbours)
    v = clear_positions(mask, (4, 4))
    assert v[0, 0, 1, 2] == 0
    assert v.sum() >= 16 - 4 and v[0, 0, 3, 0] == 1


def test_non_local_block_keeps_clear_positions() -> None:
    torch.manual_seed(0)
    block = PartialNonLocal(channels=8, n_blocks=1).eval()
    x = torch.randn(1, 8, 6, 7)
    mask = torch.zeros(1, 1, 24, 28)
    mask[..., :, 8:14] = 1
    with torch.inference_mode():
        out = block(x, mask)
    v = clear_positions(mask, (6, 7))
    assert torch.equal(out * v, x * v)
    assert not torch.allclose(out * (1 - v), x * (1 - v))


def test_patch_search_is_chunked_without_changing_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(1)
    x = torch.randn(4, 24, 20)
    mb = torch.zeros(1, 24, 20)
    mb[:, 4:14, 6:12] = 1
    whole = nearest_patch_compose(x, mb, 2, 0.6)
    monkeypatch.setattr(patch_attention, "QUERY_CHUNK", 3)
    assert torch.equal(nearest_patch_compose(x, mb, 2, 0.6), whole)
    # Queries were replaced by copies of key patches; the remainder strip is zero.
    assert not torch.equal(whole[:, 4:14, 6:12], x[:, 4:14, 6:12])
    assert torch.equal(whole[:, :4, :], x[:, :4, :])


def test_patch_search_remainder_strip_is_zero_only_when_queries_exist() -> None:
    x = torch.randn(2, 9, 9)
    damaged = torch.zeros(1, 9, 9)
    damaged[:, :4, :4] = 1
    composed = nearest_patch_compose(x, damaged, 4, 0.6)
    assert torch.count_nonzero(composed[:, 8, :]) == 0 and torch.count_nonzero(composed[:, :, 8]) == 0
    assert torch.equal(nearest_patch_compose(x, torch.zeros(1, 9, 9), 4, 0.6), x)


def test_patch_attention_takes_queries_per_image() -> None:
    torch.manual_seed(2)
    block = PatchAttention(channels=4, patch=2, threshold=0.6).eval()
    z = torch.randn(2, 4, 8, 8)
    mask = torch.zeros(2, 1, 32, 32)
    mask[0, :, :12, :12] = 1
    mask[1, :, 20:, 20:] = 1
    with torch.inference_mode():
        batch = block(z, mask)
        single = torch.cat([block(z[i : i + 1], mask[i : i + 1]) for i in range(2)])
    assert torch.allclose(batch, single, atol=1e-6)
