"""The hole fills (lite scratch's ``pipeline.hole_fill``): what they fill, and that restore and training agree."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from oldphoto.errors import UsageError
from oldphoto.holefill import fill_harmonic
from oldphoto.pipeline import fill_holes, paint_damage, prepare
from oldphoto.training.loop import run
from oldphoto.training.stages import TrainConfig
from tests.test_training import _cfg, data, one_thread, vaes  # noqa: F401  (shared fixtures)


def _scratched(h: int = 40, w: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """A left-to-right grey ramp (2 levels a pixel) with a 3-pixel vertical scratch, and its mask."""
    ramp = np.repeat((np.arange(w) * 2 + 40).astype(np.uint8)[None, :, None], h, axis=0).repeat(3, axis=2)
    mask = np.zeros((h, w), np.uint8)
    mask[:, 29:32] = 255
    return ramp, mask


def test_fill_keeps_clear_pixels_and_fills_from_the_rims() -> None:
    clean, mask = _scratched()
    photo = clean.copy()
    photo[mask > 0] = 255
    out = fill_holes(photo, mask)
    assert np.array_equal(out[mask == 0], clean[mask == 0])
    err = np.abs(out[mask > 0].astype(int) - clean[mask > 0])
    # The ramp under the scratch runs 98..102; the fill is an average of its rims (96..104).
    assert err.max() <= 6 and err.mean() <= 3, (err.mean(), err.max())
    flat = np.full((17, 23, 3), 77, np.uint8)
    holes = np.zeros((17, 23), np.uint8)
    holes[3:14, 2:20] = 255  # a wide hole fills from coarser levels
    assert np.array_equal(fill_holes(flat, holes), flat)
    assert (fill_holes(flat, np.full((17, 23), 255, np.uint8)) == 128).all()  # nothing known: mid-grey


def test_harmonic_fill_continues_a_gradient_across_a_scratch_exactly() -> None:
    # A linear ramp solves Laplace's equation, so the relaxed fill lands on it (pull-push: up to 6 off).
    clean, mask = _scratched()
    photo = clean.copy()
    photo[mask > 0] = 255
    out = fill_harmonic(photo, mask)
    assert np.array_equal(out[mask == 0], clean[mask == 0])
    assert np.abs(out.astype(int) - clean).max() <= 1
    deep = (clean.astype(np.uint16) * 257)  # 16-bit scans keep their own scale
    out16 = fill_harmonic(np.where(mask[..., None] > 0, np.uint16(65535), deep), mask)
    assert out16.dtype == np.uint16 and np.abs(out16.astype(int) - deep).max() <= 257
    flat = np.full((17, 23, 3), 77, np.uint8)
    holes = np.zeros((17, 23), np.uint8)
    holes[0:14, 2:23] = 255  # a wide hole against two edges of the photo
    assert np.array_equal(fill_harmonic(flat, holes), flat)
    assert np.array_equal(fill_harmonic(flat, np.zeros((17, 23), np.uint8)), flat)
    assert (fill_harmonic(flat, np.full((17, 23), 255, np.uint8)) == 128).all()  # nothing known: mid-grey


def test_harmonic_fill_beats_pull_push_on_procedural_damage() -> None:
    from tests.test_lite_scratch import _damaged, _psnr

    # Measured (damaged pixels, dB; seeds 0, 1, 2 on the tests' crop): pull-push 23.03/20.74/21.68,
    # harmonic 23.27/21.66/22.58, the same to 0.01 dB after 400 sweeps instead of 60. Element-wise
    # float32 sums in a fixed order: another CPU moves these by far less than the 0.14 dB of room.
    for seed, gain in ((0, 0.1), (1, 0.75), (2, 0.75)):
        clean, photo, mask = _damaged(seed)
        damaged = mask > 0
        smooth, harmonic = fill_holes(photo, mask), fill_harmonic(photo, mask)
        assert np.array_equal(harmonic[~damaged], photo[~damaged])
        assert _psnr(harmonic, clean, damaged) >= _psnr(smooth, clean, damaged) + gain, seed


def test_paint_damage_white_is_published_and_unknown_fills_are_refused() -> None:
    clean, mask = _scratched()
    white = paint_damage(clean, mask, "white")
    assert (white[mask > 0] == 255).all() and np.array_equal(white[mask == 0], clean[mask == 0])
    with pytest.raises(UsageError, match="unknown hole fill 'blur'"):
        paint_damage(clean, mask, "blur")


def test_restore_paints_as_the_card_says() -> None:
    clean, mask = _scratched()
    pipe = {"uses_mask": True, "mask_dilation": 0}
    image, m = Image.fromarray(clean), Image.fromarray(mask)
    white = prepare(image, m, pipe).x
    smooth = prepare(image, m, {**pipe, "hole_fill": "smooth"}).x
    expected = fill_holes(clean, mask).astype(np.float32) / 127.5 - 1
    assert np.allclose(smooth[0].permute(1, 2, 0).numpy(), expected, atol=1e-6)
    harmonic = prepare(image, m, {**pipe, "hole_fill": "harmonic"}).x
    expected = fill_harmonic(clean, mask).astype(np.float32) / 127.5 - 1
    assert np.allclose(harmonic[0].permute(1, 2, 0).numpy(), expected, atol=1e-6)
    assert float(white[0, :, :, 30].min()) == 1.0 and float(smooth[0, :, :, 30].max()) < 0.0


def test_scratch_training_fills_as_restore_does_and_records_it(vaes: dict, data: Path) -> None:
    from oldphoto.training.data import Sampler, load_photos
    from oldphoto.training.degrade import Damage

    clean = load_photos([data / "clean"])[0]
    batch = Sampler(clean, crop=32, damage=Damage(), rng=np.random.default_rng(3)).pairs(8, paint="smooth")
    holes = batch.mask[:, 0] > 0
    assert bool(holes.any())
    assert float(batch.x.permute(0, 2, 3, 1)[holes].max()) < 1.0  # none painted white
    root = vaes["root"]
    out = root / "smooth"
    run(_cfg("mapping-scratch", out, data, vae_a=root / "vae-a", vae_b=root / "vae-b", nl_blocks=1, steps=2,
             residual=True, hole_fill="smooth", weights={"latent_l1": 0, "image_l1": 10}), progress=False)
    assert json.loads((out / "scratch.json").read_text())["pipeline"]["hole_fill"] == "smooth"
    with pytest.raises(UsageError, match="--hole-fill smooth: use white, smooth, harmonic, for the scratch mapping stage"):
        TrainConfig(stage="mapping", out=out, hole_fill="smooth").loss_weights()
