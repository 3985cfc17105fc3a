"""The half-resolution lite wiring (``--stem s2 --norm none``) and the levels step for fading.

The published networks are untouched by both (their defaults are the published layers, which
``tests/test_parity.py`` checks); these tests check what the options add: the chain trains
from scratch without VAE runs, starts as the identity, records its config, restores the same
whole and tiled, and the levels step corrects faded photos while leaving others exactly alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from oldphoto import Restorer
from oldphoto.errors import UsageError
from oldphoto.models import build_network
from oldphoto.networks.vae import VAEDecoder, VAEEncoder
from oldphoto.pipeline import prepare
from oldphoto.tone import fade_levels, measure, undo_fading
from oldphoto.training import degrade as dg
from oldphoto.training.loop import run
from oldphoto.training.stages import TrainConfig
from oldphoto.weights.checkpoint import load_checkpoint
from tests.test_residual import _photo, one_thread  # noqa: F401  (shared photo maker, one-thread fixture)

LITE = dict(batch=2, crop=32, ngf=8, vae_blocks=1, vae_downsample=0, width=8, base=4, blocks=0, lr=1e-3,
            val_every=0, val_count=1, val_size=48, save_every=0, log_every=1, seed=0,
            weights={"gan": 0.0, "fm": 0.0, "vgg": 0.0}, residual=True, train_encoder=True, mapping_skip=True,
            norm="none", stem="s2", precision="fp32")  # auto picks bf16 for mapping on native-bf16 CPUs


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("clean")
    for i in range(3):
        _photo(64, 64, seed=i).save(root / f"{i}.png")
    return root


def test_defaults_are_the_published_layers_and_the_options_change_them() -> None:
    enc = VAEEncoder(ngf=8, n_downsample=0, n_blocks=1)
    assert isinstance(enc[1], nn.Conv2d) and enc[1].kernel_size == (7, 7)  # published: pad, 7×7, IN, ReLU
    assert "conv_block.5.weight" in dict(enc[-1].named_parameters())
    half = VAEEncoder(ngf=8, n_downsample=0, n_blocks=1, norm="none", stem="s2")
    assert isinstance(half[0], nn.Conv2d) and half[0].kernel_size == (2, 2) and half[0].stride == (2, 2)
    assert not any(isinstance(m, nn.InstanceNorm2d) for m in half.modules())
    dec = VAEDecoder(ngf=8, n_downsample=0, n_blocks=1, norm="none", stem="s2")
    x = torch.randn(1, 3, 12, 20)
    assert half(x).shape == (1, 8, 6, 10) and dec(half(x)).shape == (1, 3, 12, 20)
    mapping = build_network("mapping_quality", {"in_channels": 8, "base": 4, "width": 8, "n_blocks": 1, "norm": "none"})
    assert not any(isinstance(m, nn.InstanceNorm2d) for m in mapping.modules())
    with pytest.raises(ValueError, match="norm"):
        VAEEncoder(norm="batch")
    with pytest.raises(ValueError, match="stem"):
        VAEDecoder(stem="pixelshuffle")


def test_the_half_resolution_chain_trains_from_scratch_and_restores_tiled_as_whole(data: Path, tmp_path: Path) -> None:
    # Before any step the chain is the identity on the photo (zeroed last layers, a latent skip).
    run(TrainConfig(stage="mapping", out=tmp_path / "start", clean=[data], steps=1, **{**LITE, "lr": 0.0}), progress=False)
    photo = _photo(50, 38, seed=4)
    start = Restorer(tmp_path / "start", device="cpu", precision="fp32").restore(photo, mode="quality")
    assert np.array_equal(np.asarray(start), np.asarray(photo))

    run(TrainConfig(stage="mapping", out=tmp_path / "lite", clean=[data], steps=3, **LITE), progress=False)
    card, tensors = load_checkpoint(tmp_path / "lite", "quality")
    assert card["networks"]["encoder"]["config"] == {"in_channels": 3, "ngf": 8, "n_downsample": 0, "n_blocks": 1,
                                                      "norm": "none", "stem": "s2"}
    assert card["networks"]["mapping"]["config"]["norm"] == "none"
    assert card["pipeline"]["residual"] is True
    last = tensors["decoder.1.weight"]  # the transposed 2×2 conv, zero at the start
    assert last.shape == (8, 3, 2, 2) and float(last.abs().sum()) > 0  # trained
    whole = Restorer(tmp_path / "lite", device="cpu", precision="fp32", tile="off").restore(photo, mode="quality")
    tiled = Restorer(tmp_path / "lite", device="cpu", precision="fp32", tile=16).restore(photo, mode="quality")
    assert whole.size == photo.size
    assert not np.array_equal(np.asarray(whole), np.asarray(photo))
    diff = np.abs(np.asarray(whole, dtype=np.int16) - np.asarray(tiled, dtype=np.int16))
    assert int(diff.max()) <= 1  # tile sums differ from whole ones only in float32 rounding


def test_scratch_start_needs_the_whole_chain_trained(data: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--vae-a DIR and --vae-b DIR"):
        run(TrainConfig(stage="mapping", out=tmp_path, clean=[data], steps=1, **{**LITE, "train_encoder": False}), progress=False)
    with pytest.raises(UsageError, match="--stem"):
        TrainConfig(stage="mapping", out=tmp_path, stem="s3").loss_weights()


def _kodak_like(seed: int) -> np.ndarray:
    """A well exposed stand-in photo: smooth colour fields, each channel from black to white."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:120, 0:160] / 160.0
    img = np.stack([np.sin(3 * xx + rng.uniform(0, 6)), np.cos(4 * yy + rng.uniform(0, 6)), np.sin(2 * (xx + yy))], -1)
    img = (img - img.min(axis=(0, 1))) / (img.max(axis=(0, 1)) - img.min(axis=(0, 1)))
    return np.clip(np.rint(img * 255 + rng.normal(0, 3, img.shape)), 0, 255).astype(np.uint8)


def test_levels_leave_a_well_exposed_photo_exactly_alone() -> None:
    for seed in range(4):
        img = _kodak_like(seed)
        assert fade_levels(img) is None
        assert undo_fading(img) is img
    photo = Image.fromarray(_kodak_like(0))
    with_levels = prepare(photo, None, {"levels": True, "residual": True}).x
    without = prepare(photo, None, {"residual": True}).x
    assert torch.equal(with_levels, without)


def test_levels_undo_fading_and_casts() -> None:
    for seed in range(6):
        clean = _kodak_like(seed)
        faded = dg.fade_print(clean, np.random.default_rng(seed))
        low, high = measure(faded)
        assert low.min() > 25  # the blacks are lifted
        restored = undo_fading(faded)
        err_before = np.abs(faded.astype(float) - clean).mean()
        err_after = np.abs(restored.astype(float) - clean).mean()
        assert err_after < 0.5 * err_before  # at least half the error gone (measured on this stand-in: 21–49 levels -> 5–9)
        new_low, new_high = measure(restored)
        assert new_low.max() < 25 and new_high.min() > 235  # every channel spans the range again: no tint left
    faded_photo = Image.fromarray(faded)
    x = prepare(faded_photo, None, {"levels": True, "residual": True}).x
    assert torch.equal(x, prepare(Image.fromarray(restored), None, {"residual": True}).x)  # the card's step is this one


def test_levels_act_alike_on_16_bit_photos() -> None:
    faded = dg.fade_print(_kodak_like(1), np.random.default_rng(1))
    deep = faded.astype(np.uint16) * 257
    out8, out16 = undo_fading(faded), undo_fading(deep)
    assert out16.dtype == np.uint16
    assert int(np.abs(out16.astype(np.int64) - out8.astype(np.int64) * 257).max()) <= 257  # within one 8-bit level
    assert undo_fading(_kodak_like(0).astype(np.uint16) * 257) is not None and fade_levels(_kodak_like(0).astype(np.uint16) * 257) is None


def test_levels_after_stretch_the_restored_photo_not_the_input(data: Path, tmp_path: Path) -> None:
    """``pipeline.levels = "after"``: the networks see the photo as it is, the gated step then acts on their output."""
    import json

    run(TrainConfig(stage="mapping", out=tmp_path / "lite", clean=[data], steps=3, **LITE), progress=False)
    card_file = tmp_path / "lite" / "quality.json"
    card = json.loads(card_file.read_text())
    faded = Image.fromarray(dg.fade_print(_kodak_like(2), np.random.default_rng(2)))
    plain = np.asarray(Restorer(tmp_path / "lite", device="cpu", precision="fp32").restore(faded, mode="quality"))
    assert fade_levels(plain) is not None  # the residual chain keeps the fading
    card["pipeline"]["levels"] = "after"
    card_file.write_text(json.dumps(card))
    assert torch.equal(prepare(faded, None, card["pipeline"]).x, prepare(faded, None, {"residual": True}).x)
    after = np.asarray(Restorer(tmp_path / "lite", device="cpu", precision="fp32").restore(faded, mode="quality"))
    assert np.array_equal(after, undo_fading(plain))
    card["pipeline"]["levels"] = True
    card_file.write_text(json.dumps(card))
    before = np.asarray(Restorer(tmp_path / "lite", device="cpu", precision="fp32").restore(faded, mode="quality"))
    assert not np.array_equal(before, after)  # a different order, so a different photo


def test_the_squared_error_loss_is_the_mean_of_squares_of_the_same_error(data: Path, tmp_path: Path) -> None:
    """``image_l2`` (not published): the restored photo's mean squared error, what PSNR measures."""
    with pytest.raises(UsageError, match="unknown loss 'image_l2' for stage detector"):
        TrainConfig(stage="detector", out=tmp_path, weights={"image_l2": 1.0}).loss_weights()
    both = {**LITE["weights"], "image_l1": 1.0, "image_l2": 1.0}
    # At rate 0 the chain is the identity (zeroed last convolutions), so both terms measure the
    # same error e = degraded − clean of one batch: mean(e²) ≥ mean(|e|)² (Jensen), and < 2·mean(|e|) as |e| ≤ 2.
    step = run(TrainConfig(stage="mapping", out=tmp_path / "both", clean=[data], steps=1, **{**LITE, "weights": both, "lr": 0.0}),
               progress=False).losses[0]
    assert step["image_l1"] ** 2 <= step["image_l2"] < 2 * step["image_l1"] and step["image_l2"] != step["image_l1"]
    only = {**LITE["weights"], "image_l1": 0.0, "image_l2": 10.0}
    result = run(TrainConfig(stage="mapping", out=tmp_path / "l2", clean=[data], steps=3, **{**LITE, "weights": only}), progress=False)
    last = result.losses[-1]
    assert "image_l1" not in last and last["total"] == pytest.approx(10 * last["image_l2"], rel=1e-5)
    assert load_checkpoint(tmp_path / "l2", "quality")[0]["training"]["loss_weights"]["image_l2"] == 10
