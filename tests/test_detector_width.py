"""A detector whose full-resolution level is wider than 2^wf: built from a card, and started
from a narrower trained detector so that it computes exactly what that one did."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from oldphoto.models import build_network
from oldphoto.training.stages.config import TrainConfig

#: det42, a 16-channel (grey) detector kept in the repository, float16 as it shipped: a narrow start.
NARROW_DETECTOR = Path(__file__).resolve().parent.parent / "weights" / "runs" / "det42"


def test_a_first_width_changes_only_the_full_resolution_level() -> None:
    plain = build_network("scratch_unet", {"in_channels": 3, "out_channels": 1, "depth": 4, "wf": 4})
    wide = build_network("scratch_unet", {"in_channels": 3, "out_channels": 1, "depth": 4, "wf": 4, "first_width": 32})
    shapes = {k: v.shape for k, v in plain.state_dict().items()}
    grown = {k for k, v in wide.state_dict().items() if v.shape != shapes[k]}
    assert wide.state_dict().keys() == shapes.keys()
    assert all(k.startswith(("first.", "down_sample.0.", "down_path.0.", "up_path.3.", "last.")) for k in grown)
    assert wide.state_dict()["first.1.weight"].shape == (32, 3, 7, 7)
    assert wide.state_dict()["up_path.3.conv_block.block.1.weight"].shape == (32, 64, 3, 3)
    assert wide(torch.zeros(1, 3, 32, 32)).shape == (1, 1, 32, 32)


@pytest.mark.parametrize("train_mode", [False, True])
def test_a_trained_detector_widened_starts_equal(tmp_path: Path, train_mode: bool) -> None:
    from oldphoto.models import build_bundle
    from oldphoto.training.stages.detector import DetectorStage
    from oldphoto.weights.checkpoint import load_checkpoint

    torch.set_num_threads(2)
    folder = NARROW_DETECTOR
    meta, tensors = load_checkpoint(folder, "detector")
    narrow = build_bundle(meta["networks"])
    narrow.load_state_dict(tensors)
    narrow = narrow["unet"].float()
    torch.manual_seed(0)
    stage = DetectorStage(TrainConfig(stage="detector", out=tmp_path, wf=4, first_width=32), torch.device("cpu"))
    assert stage.init_from(folder) == ["detector.unet (full-resolution level widened from 16 to 32 channels)"]
    wide = stage.unet
    assert wide.state_dict()["first.1.weight"].shape[0] == 32
    assert float(wide.state_dict()["first.1.weight"][16:].abs().sum()) > 0  # the new channels do compute something
    x = torch.rand(2, 1, 64, 96) * 2 - 1
    for net in (narrow, wide):
        net.train(train_mode)
    with torch.no_grad():
        a, b = narrow(x), wide(x)
    assert torch.allclose(a, b, atol=1e-4), float((a - b).abs().max())
