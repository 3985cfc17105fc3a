"""One description of each network's order of operations, walked by forward, tiled executor and planner;
speed choices applied from outside the networks, at load."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from oldphoto import Restorer
from oldphoto.weights.checkpoint import load_checkpoint
from oldphoto.models import build_bundle, restoration_steps
from oldphoto.networks.blocks import InstanceNorm, ResBlock, instance_norm, relu
from oldphoto.networks.nonlocal_block import PartialNonLocal
from oldphoto.networks.steps import Global, Local, dead_after, local, run_steps
from oldphoto.networks.vae import VAEDecoder, VAEEncoder
from oldphoto.pipeline import run_networks
from oldphoto.speed import FastInstanceNorm
from oldphoto.tiling.budget import profile
from oldphoto.tiling.executor import Map, TiledExecutor, count_steps
from oldphoto.tiling.store import Arena, TensorStore

CPU = torch.device("cpu")


class ToyMapping(nn.Module):
    """An architecture the executor was never taught: it only lists its steps.

    A head, a global step that needs the whole map (centre every channel on its mean over the
    image, and mark where the mask is), and a conv fusing the input with both.
    """

    def __init__(self, channels: int = 8, width: int = 12) -> None:
        super().__init__()
        self.head = nn.Sequential(nn.Conv2d(channels, width, 3, 1, 1), instance_norm(width), relu(), ResBlock(width))
        self.fuse = nn.Conv2d(channels + width + 1, channels, 3, 1, 1)

    def centre(self, h: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        small = nn.functional.interpolate(mask.to(h.device, h.dtype), size=h.shape[-2:], mode="nearest")
        return h - h.mean(dim=(2, 3), keepdim=True), small

    def steps(self) -> list:
        return [
            Local(tuple(self.head), writes=("h",)),
            Global(self.centre, reads=("h",), writes=("centred", "small"), floats=3 * 12),
            Local((self.fuse,), reads=("x", "centred", "small")),
        ]

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return run_steps(self.steps(), x, mask)


def test_a_new_architecture_tiles_from_its_steps_alone() -> None:
    torch.manual_seed(0)
    bundle = nn.ModuleDict(
        {"encoder": VAEEncoder(ngf=8, n_blocks=1), "mapping": ToyMapping(), "decoder": VAEDecoder(ngf=8, n_blocks=1)}
    ).eval()
    x = torch.rand(1, 3, 100, 140) * 2 - 1
    mask = (torch.rand(1, 1, 100, 140) > 0.7).float()
    with torch.inference_mode():
        reference = run_networks(bundle, x, mask)["output"]
        executor = TiledExecutor(device=CPU, tile=32, image_size=(100, 140), arena=Arena(1 << 30))
        tiled = executor.whole(executor.run(bundle, Map(TensorStore(x[0])), mask), CPU)
    assert float((tiled - reference).abs().max()) <= 1e-4
    prof = profile(bundle)
    assert prof.whole == 3 * 12 / 16 and prof.movable == 0
    assert prof.conv >= (8 + 12 + 1) / 16 + 8 / 16
    # encoder 1 + 2 + 2 (res block), head 1 + 2, fuse 1, decoder 2 + 2 + 1
    assert count_steps(bundle) == (14, 1)


def test_dead_after_drops_a_map_after_its_last_read() -> None:
    steps = ToyMapping().steps()
    assert dead_after(steps) == [frozenset(), frozenset({"h"}), frozenset({"x", "centred", "small"})]
    assert dead_after([local([nn.ReLU()])]) == [frozenset({"x"})]


def test_every_network_of_a_mode_is_walked_in_run_order(tiny_weights: Path) -> None:
    meta, tensors = load_checkpoint(tiny_weights, "scratch")
    bundle = build_bundle(meta["networks"])
    steps = restoration_steps(bundle)
    assert [type(s).__name__ for s in steps] == ["Local", "Local", "Global", "Local", "Local"]
    assert steps[2].op is bundle["mapping"].NL
    walked = {id(m) for s in steps for m in s.modules()}
    containers = (nn.ModuleDict, nn.Sequential, *(type(net) for net in bundle.values()))
    assert all(id(m) in walked for m in bundle.modules() if not isinstance(m, containers))


def test_networks_are_published_until_placed(tiny_weights: Path) -> None:
    meta, tensors = load_checkpoint(tiny_weights, "scratch")
    plain = build_bundle(meta["networks"])
    plain.load_state_dict(tensors, strict=True)
    assert not any(isinstance(m, FastInstanceNorm) for m in plain.modules())
    assert all(m.head_multiple == 1 for m in plain.modules() if isinstance(m, PartialNonLocal))

    _, placed = Restorer(tiny_weights, device="cpu", precision="bf16").model("scratch")
    norms = [m for m in placed.modules() if isinstance(m, InstanceNorm)]
    assert norms and all(isinstance(m, FastInstanceNorm) for m in norms)
    assert not any(m.training for m in placed.modules())
    assert all(m.head_multiple == 16 for m in placed.modules() if isinstance(m, PartialNonLocal))
    assert placed.state_dict().keys() == plain.state_dict().keys()
    # The published kernel is kept through the non-local block; the rest switch.
    switched = [m.published_kernel for m in placed["mapping"].after_NL.modules() if isinstance(m, InstanceNorm)]
    assert switched and not any(switched)
    assert all(m.published_kernel for m in placed["mapping"].NL.modules() if isinstance(m, InstanceNorm))
