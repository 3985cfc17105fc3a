"""The global residual wiring of ``lite``: restored = input + decoder(mapping(encoder(input))),
no min–max stretch, recorded in the card's pipeline, honoured by the untiled and tiled paths
and trained by ``oldphoto train mapping --residual``."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from oldphoto import Restorer
from oldphoto.cli import app
from oldphoto.errors import UsageError
from oldphoto.models import build_bundle
from oldphoto.pipeline import Prepared, finish, prepare, run_networks
from oldphoto.tiling import finish_map, restore_pixels
from oldphoto.tiling.maps import Map
from oldphoto.tiling.store import TensorStore
from oldphoto.training.loop import run
from oldphoto.training.stages import TrainConfig
from oldphoto.weights.checkpoint import save_checkpoint
from tests.support.tiny import TINY_CONFIGS

CPU = torch.device("cpu")
NETS = {
    "encoder": {"arch": "vae_encoder", "config": TINY_CONFIGS["vae_encoder"]},
    "mapping": {"arch": "mapping_quality", "config": TINY_CONFIGS["mapping_quality"]},
    "decoder": {"arch": "vae_decoder", "config": TINY_CONFIGS["vae_decoder"]},
}
PIPELINE = {"multiple": 4, "resample": "bilinear", "uses_mask": False, "mask_dilation": 0, "residual": True}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _photo(w: int, h: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) * 127 // (w + h)], axis=-1)
    return Image.fromarray(np.clip(base + rng.integers(-40, 40, (h, w, 3)), 0, 255).astype(np.uint8))


def _residual_weights(folder: Path, *, zero_decoder: bool = False, scale: float = 1.0, skip: bool = False) -> Path:
    torch.manual_seed(0)
    nets = {**NETS, "mapping": {**NETS["mapping"], "config": {**NETS["mapping"]["config"], "skip": True}}} if skip else NETS
    bundle = build_bundle(nets)
    last = [m for m in bundle["decoder"].modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        if zero_decoder:
            last.weight.zero_()
            last.bias.zero_()
        else:
            last.weight.mul_(scale)
    save_checkpoint(folder, "quality", bundle.state_dict(), {"networks": nets, "pipeline": PIPELINE})
    return folder


def test_a_zero_correction_gives_back_the_photo_exactly(tmp_path: Path) -> None:
    photo = _photo(53, 38)
    restored = Restorer(_residual_weights(tmp_path, zero_decoder=True), device="cpu", precision="fp32").restore(photo, mode="quality")
    assert restored.size == photo.size
    assert np.array_equal(np.asarray(restored), np.asarray(photo))


def test_residual_restores_through_weights_and_is_not_stretched(tmp_path: Path) -> None:
    folder = _residual_weights(tmp_path / "w", scale=0.05)
    photo = _photo(61, 45, seed=2)
    restored = np.asarray(Restorer(folder, device="cpu", precision="fp32").restore(photo, mode="quality"), dtype=np.int16)
    diff = np.abs(restored - np.asarray(photo, dtype=np.int16))
    assert 0 < diff.mean() < 20  # a small correction of the photo, not a stretched decoder output
    src = tmp_path / "in.png"
    photo.save(src)
    r = CliRunner().invoke(app, ["restore", str(src), str(tmp_path / "out.png"), "--weights", str(folder), "--mode", "quality"])
    assert r.exit_code == 0, r.output
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out.png")), restored.astype(np.uint8))


@pytest.mark.parametrize(("width", "height", "tile", "skip"), [(203, 157, 48, False), (149, 111, 40, False), (149, 111, 40, True)])
def test_residual_tiled_equals_untiled(tmp_path: Path, width: int, height: int, tile: int, skip: bool) -> None:
    meta, bundle = Restorer(_residual_weights(tmp_path, skip=skip), device="cpu", precision="fp32").model("quality")
    assert bundle["mapping"].skip is skip
    prepared = prepare(_photo(width, height), None, meta["pipeline"])
    assert prepared.residual
    with torch.inference_mode():
        untiled = finish(run_networks(bundle, prepared.x, None)["output"], prepared).astype(np.int16)
    tiled = restore_pixels(bundle, prepared, device=CPU, tile=tile).astype(np.int16)
    assert int(np.abs(tiled - untiled).max()) <= 1


def test_mapping_skip_adds_its_input_and_no_weights() -> None:
    """``skip``: x + body(x), the same state-dict keys as the published mapping (checkpoints stay interchangeable)."""
    from oldphoto.models import build_network

    torch.manual_seed(0)
    config = TINY_CONFIGS["mapping_quality"]
    plain, skip = build_network("mapping_quality", config), build_network("mapping_quality", {**config, "skip": True})
    skip.load_state_dict(plain.state_dict())
    z = torch.randn(1, config["in_channels"], 12, 10)
    with torch.no_grad():
        assert torch.equal(skip(z), z + plain(z))
    assert len(skip.steps()) == 2 and len(plain.steps()) == 1


def test_residual_finish_map_is_finish_bit_for_bit() -> None:
    torch.manual_seed(0)
    output = torch.rand(1, 3, 52, 44) * 0.6 - 0.3
    x = torch.rand(1, 3, 52, 44) * 2 - 1
    prepared = Prepared(x=x, mask=None, size=(49, 41), pad=(3, 3), residual=True)
    expected = finish(output, prepared)
    assert np.array_equal(finish_map(Map(TensorStore(output[0])), prepared, 7), expected)
    assert np.array_equal(expected, finish(output, Prepared(x=x, mask=None, size=(49, 41), pad=(3, 3), residual=True)))
    plain = finish(output, Prepared(x=x, mask=None, size=(49, 41), pad=(3, 3)))
    assert not np.array_equal(plain, expected)


TINY = dict(batch=2, crop=32, ngf=8, vae_blocks=2, width=16, base=8, blocks=2, ndf=8, lr=1e-3,
            val_every=0, val_count=1, val_size=48, save_every=0, log_every=1, seed=0,
            weights={"gan": 0.0, "fm": 0.0}, precision="fp32")  # auto may pick bf16 on some CPUs


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    (root / "clean").mkdir()
    for i in range(3):
        _photo(64, 64, seed=i).save(root / "clean" / f"{i}.png")
    return root


def test_mapping_residual_trains_the_same_wiring_and_records_it(data: Path, tmp_path: Path) -> None:
    clean = [data / "clean"]
    for stage in ("vae-a", "vae-b"):
        w = {"gan": 0.0, "fm": 0.0, **({"latent_gan": 0.0} if stage == "vae-a" else {})}
        run(TrainConfig(stage=stage, out=tmp_path / stage, clean=clean, steps=2, **{**TINY, "weights": w}), progress=False)
    cfg = TrainConfig(stage="mapping", out=tmp_path / "lite", clean=clean, val=data / "clean", steps=4, residual=True,
                      vae_a=tmp_path / "vae-a", vae_b=tmp_path / "vae-b", **{**TINY, "val_every": 4})
    result = run(cfg, progress=False)
    assert "image_l1" in result.losses[-1] and "latent_l1" not in result.losses[-1]
    assert result.val is not None and result.val["psnr_restore"] == pytest.approx(result.val["psnr"])
    card = json.loads((tmp_path / "lite" / "quality.json").read_text())
    assert card["pipeline"]["residual"] is True
    assert card["training"]["config"]["residual"] is True
    assert card["training"]["loss_weights"]["latent_l1"] == 0 and card["training"]["loss_weights"]["image_l1"] == 10
    # the decoder was trained with the mapping, so it differs from VAE_B's
    from oldphoto.weights.checkpoint import load_checkpoint

    lite = load_checkpoint(tmp_path / "lite", "quality")[1]
    vae_b = load_checkpoint(tmp_path / "vae-b", "vae_b")[1]
    assert any(not torch.equal(lite[k], vae_b[k]) for k in vae_b if k.startswith("decoder."))
    assert all(torch.equal(lite[k], v) for k, v in load_checkpoint(tmp_path / "vae-a", "vae_a")[1].items() if k.startswith("encoder."))
    # what training validated is what restore computes
    photo = _photo(48, 48, seed=9)
    restored = Restorer(tmp_path / "lite", device="cpu", precision="fp32").restore(photo, mode="quality")
    assert restored.size == photo.size


def test_residual_is_refused_where_it_has_no_meaning(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="mapping stages"):
        TrainConfig(stage="vae-b", out=tmp_path, residual=True).loss_weights()
    with pytest.raises(UsageError, match="latent_l1"):
        TrainConfig(stage="mapping", out=tmp_path, residual=True, weights={"latent_l1": 60.0}).loss_weights()
    assert TrainConfig(stage="mapping", out=tmp_path).loss_weights()["latent_l1"] == 60.0


def test_lite_recipe_options_full_resolution_encoder_training_and_decay(data: Path, tmp_path: Path) -> None:
    """``--vae-downsample 0 --train-encoder --mapping-skip --decay``: what the bundled lite model was trained with."""
    from oldphoto.training.loop import _decay_lr
    from oldphoto.weights.checkpoint import load_checkpoint

    clean = [data / "clean"]
    tiny = {**TINY, "vae_downsample": 0}
    for stage in ("vae-a", "vae-b"):
        w = {"gan": 0.0, "fm": 0.0, **({"latent_gan": 0.0} if stage == "vae-a" else {})}
        run(TrainConfig(stage=stage, out=tmp_path / stage, clean=clean, steps=2, **{**tiny, "weights": w}), progress=False)
    assert load_checkpoint(tmp_path / "vae-a", "vae_a")[0]["networks"]["encoder"]["config"]["n_downsample"] == 0
    # before any step, the zeroed last convolutions make the chain the identity on the photo
    cfg0 = TrainConfig(stage="mapping", out=tmp_path / "start", clean=clean, steps=1, residual=True, train_encoder=True,
                       mapping_skip=True, vae_a=tmp_path / "vae-a", vae_b=tmp_path / "vae-b", **{**tiny, "lr": 0.0})
    run(cfg0, progress=False)
    start = _photo(40, 32, seed=4)
    assert np.array_equal(np.asarray(Restorer(tmp_path / "start", device="cpu", precision="fp32").restore(start, mode="quality")), np.asarray(start))
    cfg = TrainConfig(stage="mapping", out=tmp_path / "lite", clean=clean, steps=4, residual=True, train_encoder=True, decay=2,
                      mapping_skip=True, vae_a=tmp_path / "vae-a", vae_b=tmp_path / "vae-b", **tiny)
    run(cfg, progress=False)
    card, lite = load_checkpoint(tmp_path / "lite", "quality")
    assert card["networks"]["mapping"]["config"]["skip"] is True
    vae_a = load_checkpoint(tmp_path / "vae-a", "vae_a")[1]
    assert any(not torch.equal(lite[k], vae_a[k]) for k in vae_a if k.startswith("encoder."))  # trained end to end
    photo = _photo(50, 38, seed=3)
    whole = Restorer(tmp_path / "lite", device="cpu", precision="fp32", tile="off").restore(photo, mode="quality")
    tiled = Restorer(tmp_path / "lite", device="cpu", precision="fp32", tile=16).restore(photo, mode="quality")
    assert whole.size == photo.size and np.array_equal(np.asarray(whole), np.asarray(tiled))

    # the schedule: constant, then linear to zero over the last `decay` steps, resumable from the optimiser's state
    class Stage:
        optims = {"g": torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)}

    sched = TrainConfig(stage="mapping", out=tmp_path, steps=10, decay=4)
    rates = []
    for step in range(10):
        _decay_lr(Stage, sched, step)  # type: ignore[arg-type]
        rates.append(Stage.optims["g"].param_groups[0]["lr"])
    assert rates == pytest.approx([1e-3] * 7 + [7.5e-4, 5e-4, 2.5e-4])

    # a later chunk restarts at the run file's rate, with the saved run's Adam moments
    from oldphoto.training.stages import make_stage
    from oldphoto.training.state import load_state

    saved = load_state(tmp_path / "lite" / "state")["stage_state"]
    chunk = make_stage(replace(cfg, lr=2.5e-4, steps=8, resume=True), torch.device("cpu"))
    chunk.load_state(saved)
    group = chunk.optims["mapping"].param_groups[0]
    assert group["lr"] == group["initial_lr"] == 1.25e-4  # the mapping as published: TTUR, lr/2
    moments = chunk.optims["mapping"].state_dict()["state"][0]["exp_avg"]
    assert torch.equal(moments, saved["optims"]["mapping"]["state"][0]["exp_avg"]) and moments.abs().sum() > 0
    with pytest.raises(UsageError, match="--train-encoder needs --residual"):
        TrainConfig(stage="mapping", out=tmp_path, train_encoder=True).loss_weights()
    with pytest.raises(UsageError, match="--mapping-skip"):
        TrainConfig(stage="mapping-scratch", out=tmp_path, mapping_skip=True).loss_weights()
