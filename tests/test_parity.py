"""Parity with tensors and images computed by the published code (tests/data/parity).

Each test writes the published-format ``.pth`` files from the manifest's weight rule, runs the
real ``import-official`` path, loads our safetensors checkpoint, and compares our numbers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from oldphoto import Restorer
from oldphoto.checkpoint import load_checkpoint
from oldphoto.cli import app
from oldphoto.detection import detect_probability, detection_input, probability_to_mask
from oldphoto.models import build_bundle
from oldphoto.pipeline import prepare, run_networks
from tests.support.parity import PARITY, tensor, write_published_detector, write_published_mode

TOL = 1e-4
MODES = ("quality", "scratch", "hr")


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """All four parity models, written as published files and imported through the CLI."""
    root = tmp_path_factory.mktemp("parity")
    for mode in MODES:
        write_published_mode(mode, root / mode / "checkpoints")
    write_published_detector(root / "detector" / "checkpoints")
    dest = root / "ours"
    runner = CliRunner()
    for part in (*MODES, "detector"):
        # Each mode's manifest has its own weights for shared files, so each is its own source tree;
        # the parent of checkpoints/ is given, which import-official must accept too.
        result = runner.invoke(app, ["weights", "import-official", str(root / part), str(dest / part)])
        assert result.exit_code == 0, result.output
    return dest


def _bundle(folder: Path, name: str) -> tuple[dict, torch.nn.ModuleDict]:
    meta, tensors = load_checkpoint(folder / name, name)
    bundle = build_bundle(meta["networks"])
    bundle.load_state_dict(tensors, strict=True)
    return meta, bundle.eval()


@pytest.mark.parametrize("mode", MODES)
def test_network_tensors_match_published(imported: Path, mode: str) -> None:
    _, bundle = _bundle(imported, mode)
    x = torch.from_numpy(tensor(mode, "input"))
    mask = torch.from_numpy(tensor(mode, "mask")) if mode != "quality" else None
    with torch.inference_mode():
        out = run_networks(bundle, x, mask)
    for name in ("latent", "mapped", "output"):
        diff = np.abs(out[name].numpy() - tensor(mode, name)).max()
        assert diff <= TOL, f"{mode} {name}: max abs diff {diff:.3g}"


@pytest.mark.parametrize("mode", MODES)
def test_restorer_networks_match_published(imported: Path, mode: str) -> None:
    """The bundle as a Restorer runs it (weight layouts, norm kernels chosen for speed) still meets 1e-4."""
    from oldphoto.networks.blocks import InstanceNorm

    _, bundle = Restorer(imported / mode, device="cpu", precision="fp32").model(mode)
    norms = [m for m in bundle.modules() if isinstance(m, InstanceNorm)]
    assert all(m.published_kernel for m in bundle["encoder"].modules() if isinstance(m, InstanceNorm))
    assert 0 < sum(not m.published_kernel for m in norms) < len(norms)
    x = torch.from_numpy(tensor(mode, "input"))
    mask = torch.from_numpy(tensor(mode, "mask")) if mode != "quality" else None
    with torch.inference_mode():
        out = run_networks(bundle, x, mask)
    # The latent (and so what an attention block reads) is computed with the published kernels.
    assert np.array_equal(out["latent"].numpy(), tensor(mode, "latent"))
    for name in ("latent", "mapped", "output"):
        diff = np.abs(out[name].contiguous().numpy() - tensor(mode, name)).max()
        assert diff <= TOL, f"{mode} {name}: max abs diff {diff:.3g}"


@pytest.mark.parametrize("mode", MODES)
def test_preprocessing_matches_published(imported: Path, mode: str) -> None:
    meta, _ = _bundle(imported, mode)
    image = Image.open(PARITY / f"{mode}_input.png")
    mask = Image.open(PARITY / f"{mode}_mask.png") if mode != "quality" else None
    prepared = prepare(image, mask, meta["pipeline"], "published")
    assert np.array_equal(prepared.x.numpy(), tensor(mode, "input"))
    if mask is not None:
        assert prepared.mask is not None
        assert np.array_equal(prepared.mask.numpy(), tensor(mode, "mask"))


@pytest.mark.parametrize("mode", MODES)
def test_whole_pipeline_png_matches_published(imported: Path, mode: str) -> None:
    restorer = Restorer(imported / mode, device="cpu", precision="fp32")
    image = Image.open(PARITY / f"{mode}_input.png")
    mask = Image.open(PARITY / f"{mode}_mask.png") if mode != "quality" else None
    out = np.asarray(restorer.restore(image, mask, mode=mode, postprocess="published"), dtype=np.int16)
    expected = np.asarray(Image.open(PARITY / f"{mode}_expected.png"), dtype=np.int16)
    assert out.shape == expected.shape
    diff = np.abs(out - expected)
    assert diff.max() <= 1
    assert (diff > 0).sum() <= 0.0005 * diff.size  # "a handful of pixels"


def test_detector_matches_published(imported: Path) -> None:
    meta, bundle = _bundle(imported, "detector")
    image = Image.open(PARITY / "detection_input.png")
    x, size = detection_input(image, meta["pipeline"], "published")
    assert np.array_equal(x.numpy(), tensor("detection", "input"))
    with torch.inference_mode():
        logits = bundle["unet"](x)
        prob = detect_probability(bundle["unet"], x, size)
    assert np.abs(logits.numpy() - tensor("detection", "logits")).max() <= TOL
    expected_prob = tensor("detection", "prob_full")
    assert np.abs(prob.numpy() - expected_prob).max() <= TOL
    ours = np.asarray(probability_to_mask(prob, meta["pipeline"]["threshold"])) > 0
    expected = np.asarray(Image.open(PARITY / "detection_expected_mask.png")) > 0
    undecided = np.abs(expected_prob[0, 0] - 0.4) < TOL
    assert np.array_equal(ours[~undecided], expected[~undecided])


def test_detector_through_restorer_matches_published(imported: Path) -> None:
    restorer = Restorer(imported / "detector", device="cpu", precision="fp32")
    mask = restorer.detect(Image.open(PARITY / "detection_input.png"), postprocess="published")
    expected = np.asarray(Image.open(PARITY / "detection_expected_mask.png"))
    assert mask.size == (256, 256)
    assert np.array_equal(np.asarray(mask), expected)
