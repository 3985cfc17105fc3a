"""Scratch stages on a tiny config: the scratch mapping and the detector train and restore."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from oldphoto.cli import app
from oldphoto.models import build_network
from oldphoto.training.differentiable import make_trainable
from oldphoto.training.loop import run
from tests.test_training import _cfg, _fall, _untrained, data, one_thread, vaes  # noqa: F401  (shared fixtures)


def test_differentiable_attend_equals_the_inference_block() -> None:
    torch.manual_seed(0)
    net = build_network("mapping_scratch", {"in_channels": 8, "base": 8, "width": 16, "n_blocks": 1, "nl_blocks": 1})
    for p in net.parameters():
        torch.nn.init.normal_(p, 0, 0.3)  # sharp attention, so a wrong formula would show
    z = torch.randn(2, 8, 12, 12)
    mask = (torch.rand(2, 1, 48, 48) > 0.7).float()
    with torch.no_grad():
        expected = net(z, mask)
        got = make_trainable(net)(z, mask)
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5)
    z.requires_grad_(True)
    net(z, mask).sum().backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()


def test_scratch_mapping_lowers_its_loss_and_restores_with_a_mask(vaes: dict, data: Path, photos: Path) -> None:
    root = vaes["root"]
    cfg = _cfg("mapping-scratch", root / "scratch", data, vae_a=root / "vae-a", vae_b=root / "vae-b", nl_blocks=1, steps=40)
    result = run(cfg, progress=False)
    fall = _fall(result.losses, _untrained(cfg), "latent_l1")
    # Trained over untrained latent L1 on the last five batches after 40 steps, one thread: on an
    # AMD EPYC Zen 4 (AVX-512, no AMX) 0.84 for seed 0, 0.76-0.88 over seeds 0-5 (after 20
    # steps up to 0.90); the bar is a 5 % fall.
    assert fall < 0.95, fall
    src = sorted(photos.glob("*.png"))[0]
    w, h = Image.open(src).size
    mask = Image.new("L", (w, h), 0)
    mask.paste(255, (w // 3, 0, w // 3 + 4, h))
    mask.save(root / "mask.png")
    dest = root / "scratch.png"
    r = CliRunner().invoke(app, ["restore", str(src), str(dest), "--weights", str(root / "scratch"), "--mode", "scratch",
                                 "--mask", str(root / "mask.png")])
    assert r.exit_code == 0, r.output
    assert Image.open(dest).size == (w, h)


def _fixed_batch_bce(folder: Path | None, data: Path) -> float:
    """BCE of a detector (trained from ``folder``, or freshly initialised) on one fixed batch.

    The per-step losses are too noisy to compare (the damaged share of a 32² crop swings
    from 2 % to 40 %), so the detector is judged on the same 16 held-out crops before and
    after training; batch norm uses batch statistics in both cases.
    """
    from oldphoto.weights.checkpoint import load_checkpoint
    from oldphoto.training.data import Sampler, load_photos
    from oldphoto.training.losses import init_weights

    torch.manual_seed(0)  # the run's own initialisation
    unet = init_weights(build_network("scratch_unet", {"in_channels": 1, "out_channels": 1, "depth": 4, "wf": 3}))
    if folder is not None:
        unet.load_state_dict({k[5:]: v for k, v in load_checkpoint(folder, "detector")[1].items()})
    clean = load_photos([data / "val"])[0]
    batch = Sampler(clean, crop=32, rng=np.random.default_rng(99)).detection(16)
    with torch.no_grad():
        return float(torch.nn.functional.binary_cross_entropy_with_logits(unet(batch.x), batch.mask))


def test_detector_lowers_its_loss_and_detects_through_weights(data: Path, tmp_path: Path, photos: Path) -> None:
    result = run(_cfg("detector", tmp_path, data, wf=3, lr=1e-3, val_size=64, steps=60, val_every=30), progress=False)
    before, after = _fixed_batch_bce(None, data), _fixed_batch_bce(tmp_path, data)
    # One thread, BCE on the fixed batch: 60 steps on an AMD EPYC Zen 4 (AVX-512, no AMX)
    # 0.690 -> 0.496 (ratio 0.72; seeds 0-5: 0.69-0.74). After the 20 steps this test used to
    # take, the ratio was 0.82-0.94 over seeds and 0.83 (Xeon, AMX), 0.88 (EPYC, AVX2), 0.94
    # (this Zen 4) for seed 0: too few steps to tell learning from a CPU's rounding.
    assert after < 0.85 * before, (before, after)
    assert result.val is not None and set(result.val) == {"precision", "recall", "f1", "iou"}
    from oldphoto.api import Restorer

    src = sorted(photos.glob("*.png"))[0]
    mask = Restorer(tmp_path, device="cpu").detect(Image.open(src))
    assert mask.mode == "L" and mask.size == Image.open(src).size


def test_detector_needs_a_crop_multiple_of_16(data: Path, tmp_path: Path) -> None:
    from oldphoto.errors import UsageError

    with pytest.raises(UsageError, match="multiple of 16"):
        run(_cfg("detector", tmp_path, data, crop=40), progress=False)


def test_the_hole_loss_is_the_scratch_mappings_and_trains_the_holes(vaes: dict, data: Path) -> None:
    """``hole_l1`` (not published; lite's scratch recipe): image L1 over the damaged pixels alone."""
    from oldphoto.errors import UsageError
    from oldphoto.training.stages.config import TrainConfig

    with pytest.raises(UsageError, match="unknown loss 'hole_l1' for stage mapping"):
        TrainConfig(stage="mapping", out=data, weights={"hole_l1": 1.0}).loss_weights()
    root = vaes["root"]
    cfg = _cfg("mapping-scratch", root / "holes", data, vae_a=root / "vae-a", vae_b=root / "vae-b", nl_blocks=1,
               residual=True, train_encoder=True, weights={"gan": 0.0, "fm": 0.0, "hole_l1": 10.0})
    result = run(cfg, progress=False)
    holes = [step["hole_l1"] for step in result.losses if "hole_l1" in step]
    assert len(holes) >= 15  # half the samples carry damage: a batch of 4 almost always has some
    first, last = float(np.mean(holes[:5])), float(np.mean(holes[-5:]))
    # One thread, first and last five damaged batches, AMD EPYC Zen 4 (AVX-512, no AMX), seed 0:
    # 0.779 -> 0.335 (ratio 0.43; seeds 0-5: 0.37-0.53) with the thin damage before issue 25;
    # 0.722 -> 0.473 (0.66) with its wide cracks, folds and emulsion loss (more to fill). The bar
    # is a 20 % fall.
    assert last < 0.8 * first, (first, last)


def test_detector_samples_shrink_as_detection_shrinks_a_photo(data: Path) -> None:
    from oldphoto.training.data import Sampler, load_photos, shrink

    photo, mask = np.zeros((64, 64, 3), np.uint8), np.zeros((64, 64), np.uint8)
    photo[:, 31], mask[:, 31] = 255, 255  # a 1-pixel line, halved: half its contrast on one column
    small, small_mask = shrink(photo, mask, 32)
    assert small.shape == (32, 32, 3) and (small[:, 15] == 128).all() and (np.delete(small, 15, axis=1) == 0).all()
    assert (small_mask[:, 15] == 255).all() and (np.delete(small_mask, 15, axis=1) == 0).all()
    clean = load_photos([data / "clean"])[0]
    a, b = (Sampler(clean, crop=32, rng=np.random.default_rng(5)).detection(6, rescale=0.5) for _ in range(2))
    assert a.x.shape == a.mask.shape == (6, 1, 32, 32)
    assert torch.equal(a.x, b.x) and torch.equal(a.mask, b.mask) and float(a.mask.sum()) > 0


def test_detector_damage_share_follows_p_damage(data: Path) -> None:
    from oldphoto.training.data import Sampler, load_photos

    clean = load_photos([data / "clean"])[0]

    def damaged_share(p: float) -> float:
        batch = Sampler(clean, crop=32, rng=np.random.default_rng(7)).detection(60, p_damage=p)
        return float((batch.mask.flatten(1).amax(1) > 0).float().mean())

    assert damaged_share(0.0) == 0.0
    # A drawn damage can miss a 32² crop now and then, so "damaged" is at most p, and near it.
    assert 0.15 <= damaged_share(0.3) <= 0.45
    assert damaged_share(1.0) >= 0.85


def test_rescanned_detector_samples_fade_their_damage_with_the_print(data: Path) -> None:
    from oldphoto.training.data import Sampler, load_photos
    from oldphoto.training.degrade import Recipe
    from oldphoto.training.damage import Damage

    clean = load_photos([data / "clean"])[0]
    # Fading alone, always, to at most 60 % contrast: a print whose damage came first fades
    # with it, so no damaged pixel keeps paper-white; damage drawn after the fading does.
    recipe = Recipe(p_each=0.0, p_fade=1.0, fade_contrast=(0.5, 0.6), p_grey=0.0)
    damage = Damage(kinds=("cracks",), p_kind={"cracks": 1.0})

    def brightest_damage(p_rescan: float) -> float:
        s = Sampler(clean, crop=64, recipe=recipe, damage=damage, rng=np.random.default_rng(3))
        batch = s.detection(16, p_damage=1.0, p_rescan=p_rescan)
        grey = (batch.x + 1) * 127.5
        return float(grey[batch.mask > 0].max())

    assert brightest_damage(0.0) >= 235
    assert brightest_damage(1.0) <= 215


def test_detector_damage_zoom_draws_wider_cracks_and_changes_nothing_at_one(data: Path) -> None:
    from oldphoto.training.data import Sampler, load_photos
    from oldphoto.training.damage import Damage

    clean = load_photos([data / "clean"])[0]
    damage = Damage(kinds=("cracks",), p_kind={"cracks": 1.0})

    def batch(**zoom: float):
        return Sampler(clean, crop=64, damage=damage, rng=np.random.default_rng(11)).detection(24, p_damage=1.0, **zoom)

    plain, one = batch(), batch(damage_zoom=1.0)
    assert torch.equal(plain.x, one.x) and torch.equal(plain.mask, one.mask)  # 1 is off: the same draws as before
    # Cracks sized for a working size up to 3x larger: far more of each crop is crack, as a card's
    # larger working sizes see the same damage wider.
    assert float(batch(damage_zoom=3.0).mask.mean()) >= 1.5 * float(plain.mask.mean())
