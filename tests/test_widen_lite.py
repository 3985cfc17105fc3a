"""``weights/widen_lite.py`` grows the lite quality chain without changing what it computes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from oldphoto.models import build_network
from oldphoto.weights.checkpoint import load_checkpoint
from oldphoto.weights.choice import lite_folder

ROOT = Path(__file__).resolve().parent.parent


def _chain(folder: Path) -> tuple[dict, list[torch.nn.Module]]:
    meta, tensors = load_checkpoint(folder, "quality")
    nets = []
    for name in ("encoder", "mapping", "decoder"):
        spec = meta["networks"][name]
        net = build_network(spec["arch"], spec["config"])
        net.load_state_dict({k[len(name) + 1:]: v for k, v in tensors.items() if k.startswith(name + ".")}, strict=True)
        nets.append(net.eval())
    return meta, nets


def test_a_widened_chain_computes_what_the_narrow_one_did(tmp_path: Path) -> None:
    narrow_meta, narrow = _chain(lite_folder())
    ngf = narrow_meta["networks"]["encoder"]["config"]["ngf"]  # 96 since the wide96 chain shipped; 64 before
    subprocess.run([sys.executable, str(ROOT / "weights" / "widen_lite.py"), str(lite_folder()), str(tmp_path), "--ngf", str(ngf + 32)],
                   check=True, capture_output=True)
    wide_meta, wide = _chain(tmp_path)
    assert wide_meta["networks"]["encoder"]["config"]["ngf"] == wide_meta["networks"]["mapping"]["config"]["width"] == ngf + 32
    assert sum(p.numel() for n in wide for p in n.parameters()) > 1.5 * sum(p.numel() for n in narrow for p in n.parameters())
    # The card records the widening as a recipe step that leads back to the narrow chain.
    assert wide_meta["training"]["stage"] == "widen" and wide_meta["training"]["config"]["init_from"] == str(lite_folder())
    x = torch.rand(2, 3, 48, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        a, b = x, x
        for n, w in zip(narrow, wide):
            a, b = n(a), w(b)
    # The new channels feed nothing, so only the order of float32 sums may differ.
    assert (a - b).abs().max().item() <= 1e-5
    # ...and they are live: the mapping's new channels carry a signal the next step can use.
    with torch.no_grad():
        latent = wide[1](wide[0](x))
    assert latent[:, ngf:].abs().mean().item() > 1e-3


def test_a_deepened_chain_computes_what_the_shallow_one_did(tmp_path: Path) -> None:
    from oldphoto.networks.blocks import ResBlock

    shallow_meta, shallow = _chain(lite_folder())
    blocks = shallow_meta["networks"]["encoder"]["config"]["n_blocks"]
    subprocess.run([sys.executable, str(ROOT / "weights" / "widen_lite.py"), str(lite_folder()), str(tmp_path), "--vae-blocks", str(blocks + 1)],
                   check=True, capture_output=True)
    deep_meta, deep = _chain(tmp_path)
    for i in (0, 2):
        assert sum(isinstance(m, ResBlock) for m in deep[i]) == sum(isinstance(m, ResBlock) for m in shallow[i]) + 1
    assert deep_meta["networks"]["mapping"] == shallow_meta["networks"]["mapping"]
    assert "--vae-blocks" in deep_meta["training"]["command"] and deep_meta["training"]["config"]["init_from"] == str(lite_folder())
    x = torch.rand(2, 3, 48, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        a, b = x, x
        for s, d in zip(shallow, deep):
            a, b = s(a), d(b)
    # Each new block adds exactly zero, so the outputs are the same computation.
    assert (a - b).abs().max().item() == 0.0
    # ...and it is live: its zeroed last convolution gets a gradient at the first step.
    y = x
    for d in deep:
        y = d(y)
    y.square().mean().backward()
    new_blocks = [m for m in deep[0] if isinstance(m, ResBlock)][blocks:] + [m for m in deep[2] if isinstance(m, ResBlock)][blocks:blocks + 1]
    assert len(new_blocks) == 2
    for block in new_blocks:
        last = [m for m in block.conv_block if isinstance(m, torch.nn.Conv2d)][-1]
        assert last.weight.abs().max().item() == 0.0 and last.weight.grad.abs().max().item() > 0.0
