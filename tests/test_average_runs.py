"""``weights/average_runs.py`` mixes two runs of one network weight by weight, and records both."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from oldphoto.fsutil import sha256_file
from oldphoto.models import build_network
from oldphoto.weights.checkpoint import load_checkpoint, save_checkpoint

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "weights" / "average_runs.py"


def _run(folder: Path, seed: int, wf: int = 2, init_from: str | None = None) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    networks = {"unet": {"arch": "scratch_unet", "config": {"in_channels": 1, "out_channels": 1, "depth": 2, "wf": wf}}}
    net = build_network("scratch_unet", networks["unet"]["config"])
    tensors = {f"unet.{k}": v for k, v in net.state_dict().items()}
    for k, v in tensors.items():
        if v.is_floating_point():
            v.normal_()  # running statistics too, so that every float tensor differs between the runs
        else:
            v.fill_(seed + 1)
    training = {"stage": "detector", "command": f"train {folder.name}", "step": 10, "wall_seconds": 1.0,
                "config": {"init_from": init_from}}
    save_checkpoint(folder, "detector", tensors, {"networks": networks, "pipeline": {"threshold": 0.4}, "training": training,
                                                   "license": "MIT", "origin": f"trained as {folder.name}"})
    return tensors


def test_the_average_is_the_weighted_sum_and_the_card_names_both_runs(tmp_path: Path) -> None:
    first = _run(tmp_path / "tuned", seed=1, init_from=str(tmp_path / "base"))
    second = _run(tmp_path / "base", seed=2)
    out = tmp_path / "mix"
    subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "tuned"), str(tmp_path / "base"), str(out), "--weight", "0.25"],
                   check=True, capture_output=True)
    meta, mixed = load_checkpoint(out, "detector")
    assert mixed.keys() == first.keys()
    for key, a in first.items():
        if a.is_floating_point():
            torch.testing.assert_close(mixed[key], 0.25 * a + 0.75 * second[key], rtol=0, atol=1e-6)
        else:
            assert torch.equal(mixed[key], a)  # batch-norm step counts: the first run's
    assert meta["pipeline"] == {"threshold": 0.4}
    assert (meta["license"], meta["origin"]) == ("MIT", "trained as tuned")  # the first run's licence and origin
    training = meta["training"]
    assert training["stage"] == "average" and training["config"]["init_from"] == str(tmp_path / "tuned")
    assert [(s["weight"], s["sha256"]) for s in training["averaged"]] == [
        (0.25, sha256_file(tmp_path / "tuned" / "detector.safetensors")),
        (0.75, sha256_file(tmp_path / "base" / "detector.safetensors"))]
    # each run's own record comes along: what it ran, from where (and, for a real run, on which photos)
    assert [(s["stage"], s["command"], s["config"]["init_from"]) for s in training["averaged"]] == [
        ("detector", "train tuned", str(tmp_path / "base")), ("detector", "train base", None)]


def test_runs_of_different_networks_are_refused_in_one_line(tmp_path: Path) -> None:
    _run(tmp_path / "a", seed=1)
    _run(tmp_path / "b", seed=2, wf=3)
    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "a"), str(tmp_path / "b"), str(tmp_path / "mix"),
                           "--weight", "0.5"], capture_output=True, text=True)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [f"{tmp_path / 'b'}: its networks differ from {tmp_path / 'a'}'s (detector.json 'networks')"]
    assert not (tmp_path / "mix").exists()
