"""The detector reading colour: batches, the grey-to-colour start, the card's input, end to end.

A grey detector's first layer spread over red, green and blue by Pillow's luma weights must start
equal to the grey detector (the only difference is Pillow rounding its grey to whole levels), and a
colour detector trained through the CLI must detect through the same restore path as a grey one.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from oldphoto.cli import app
from oldphoto.training.stages.config import TrainConfig
from oldphoto.weights.choice import lite_folder
from tests.test_lite_scratch import trained_runs
from tests.test_training import data, one_thread  # noqa: F401  (shared fixtures)

#: det42, the grey detector det47 (bundled until det53a) was spread from, float16 as it shipped.
GREY_DETECTOR = Path(__file__).resolve().parent.parent / "weights" / "runs" / "det42"

LUMA = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)


def _stage(tmp_path: Path, **kw):
    from oldphoto.training.stages.detector import DetectorStage

    torch.manual_seed(0)
    return DetectorStage(TrainConfig(stage="detector", out=tmp_path, colour=True, wf=4, **kw), torch.device("cpu"))


def test_colour_batches_are_the_grey_batches_in_colour(data: Path) -> None:
    from oldphoto.training.data import Sampler, load_photos

    clean = load_photos([data / "clean"])[0]
    grey, colour = (Sampler(clean, crop=32, rng=np.random.default_rng(7)).detection(6, p_rescan=0.5, colour=c) for c in (False, True))
    assert grey.x.shape == (6, 1, 32, 32) and colour.x.shape == (6, 3, 32, 32)
    assert torch.equal(grey.mask, colour.mask)
    # Pillow's "L" rounds to whole levels: at most half a level apart on the [−1, 1] scale.
    luma = (colour.x * LUMA).sum(1, keepdim=True)
    assert float((luma - grey.x).abs().max()) <= 0.5 / 127.5 + 1e-5
    assert float((colour.x[:, 0] - colour.x[:, 2]).abs().max()) > 0.05  # colour crops really are in colour


def test_a_grey_detector_spread_over_rgb_starts_equal(tmp_path: Path, photos: Path) -> None:
    from oldphoto.detection import damage_probability, input_channels, mask_from_probability
    from oldphoto.models import build_bundle
    from oldphoto.weights.checkpoint import load_checkpoint

    grey_folder = GREY_DETECTOR
    meta, tensors = load_checkpoint(grey_folder, "detector")
    grey = build_bundle(meta["networks"])
    grey.load_state_dict(tensors)
    stage = _stage(tmp_path)
    assert stage.init_from(grey_folder) == ["detector.unet (grey, spread over RGB by luma)"]
    colour = stage.unet.eval()
    grey_unet = grey["unet"].eval()
    assert (input_channels(grey_unet), input_channels(colour)) == (1, 3)
    x = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2 - 1
    with torch.no_grad():  # in float64, so only the float32 rounding of the spread weights is left
        got, expected = colour.double()(x), grey_unet.double()((x * LUMA.double()).sum(1, keepdim=True))
        assert torch.allclose(got, expected, atol=1e-4), float((got - expected).abs().max())
        colour.float(), grey_unet.float()
        photo = Image.open(photos / "scratched_b.png").convert("RGB")
        masks = [np.asarray(mask_from_probability(damage_probability(net, photo, meta["pipeline"], "default"), meta["pipeline"]))
                 for net in (grey_unet, colour)]
    # Only Pillow's whole-level grey differs. On an Intel Xeon (AMX) 31 of 65 536 pixels flip here (0.05 %;
    # scratched_a 0.002 %, scratched_c 0.04 %), and the float64 logits above differ by 5e-7 at most.
    assert masks[0].mean() > 2  # the grey detector marks this print's scratches
    assert (masks[0] != masks[1]).mean() < 0.005


def test_the_bundled_detector_reads_colour() -> None:
    from oldphoto import Restorer
    from oldphoto.detection import input_channels

    meta, bundle = Restorer(model="lite", device="cpu", precision="fp32").model("detector")
    assert meta["networks"]["unet"]["config"]["in_channels"] == 3 and input_channels(bundle["unet"]) == 3
    card = json.loads((lite_folder() / "detector.json").read_text())
    assert all(run["config"]["colour"] is True for run in trained_runs(card))


def test_colour_is_for_the_detector_and_a_colour_checkpoint_does_not_fit_a_grey_run(tmp_path: Path) -> None:
    from oldphoto.errors import UsageError, WeightsError
    from oldphoto.training.stages.detector import DetectorStage
    from oldphoto.weights.checkpoint import save_checkpoint

    with pytest.raises(UsageError, match="--colour is for the detector"):
        TrainConfig(stage="vae-b", out=tmp_path, colour=True).loss_weights()
    stage = _stage(tmp_path / "colour")
    tensors, meta = stage.export()
    save_checkpoint(tmp_path / "colour", "detector", tensors, meta)
    grey = DetectorStage(TrainConfig(stage="detector", out=tmp_path / "grey", wf=4), torch.device("cpu"))
    with pytest.raises(WeightsError, match="does not fit the detector being trained"):
        grey.init_from(tmp_path / "colour")


def test_colour_detector_trains_through_the_cli_and_detects(data: Path, tmp_path: Path, photos: Path) -> None:
    from oldphoto.api import Restorer

    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["train", "detector", "--out", str(out), "--clean", str(data / "clean"), "--val", str(data / "val"),
                                 "--colour", "--init-from", str(GREY_DETECTOR), "--wf", "4", "--steps", "3", "--val-every", "3",
                                 "--val-count", "1", "--val-size", "48", "--batch", "2", "--crop", "32", "--precision", "fp32",
                                 "--no-progress"])
    assert r.exit_code == 0, r.output
    card = json.loads((out / "detector.json").read_text())
    assert card["networks"]["unet"]["config"]["in_channels"] == 3
    assert card["training"]["config"]["colour"] is True
    src = photos / "scratched_a.png"
    mask = Restorer(out, device="cpu").detect(Image.open(src))
    assert mask.mode == "L" and mask.size == Image.open(src).size
