"""Widen or deepen a trained lite quality chain without changing what it computes, to train on.

A wider chain trained from scratch would spend its first day of CPU steps catching up with the
narrow one. Instead every convolution is grown (net2wider-style): the trained weights keep
their block, the new channels get the network's default initialisation on their inputs and
exactly zero on every weight that carries them onward (into an old channel, a new one's
residual path aside, or the output). So the wide chain's output equals the narrow one's (up
to float rounding), and gradient still reaches every new weight (an output weight sees the
new channel's activation, so it leaves zero at the first step). Then::

    python weights/widen_lite.py runs/lite4 runs/wide96/init --ngf 96
    oldphoto train --config weights/runs/wide96/run.toml        # init_from = runs/wide96/init

``--vae-blocks N`` deepens instead (net2deeper): the encoder and decoder get residual blocks up
to N each, every new block's second convolution exactly zero, so each starts as the identity;
the encoder's new blocks follow its old ones, the decoder's precede its upsampling convolution.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from oldphoto.models import build_network  # noqa: E402
from oldphoto.networks.blocks import ResBlock  # noqa: E402
from oldphoto.weights.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402

WIDTH_KEYS = {"encoder": ("ngf",), "mapping": ("in_channels", "width", "base"), "decoder": ("ngf",)}


def widened_config(networks: dict, ngf: int) -> dict:
    """The cards' networks with every width scaled by ``ngf`` / the old ngf (in/out image channels kept)."""
    old = networks["encoder"]["config"]["ngf"]
    out = copy.deepcopy(networks)
    for net, keys in WIDTH_KEYS.items():
        for k in keys:
            out[net]["config"][k] = out[net]["config"][k] * ngf // old
    return out


def grow(narrow: nn.Module, wide: nn.Module) -> None:
    """Copy ``narrow``'s weights into the leading block of ``wide``'s; zero what carries a new channel on."""
    small = dict(narrow.named_parameters())
    with torch.no_grad():
        for name, module in wide.named_modules():
            if not isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                continue
            w_old = small[f"{name}.weight" if name else "weight"]
            w = module.weight
            in_dim = 0 if isinstance(module, nn.ConvTranspose2d) else 1
            new_in = [slice(None)] * w.dim()
            new_in[in_dim] = slice(w_old.shape[in_dim], None)
            w[tuple(new_in)] = 0.0  # a new channel feeds nothing yet
            w[tuple(slice(0, s) for s in w_old.shape)] = w_old
            if module.bias is not None:
                b_old = small[f"{name}.bias" if name else "bias"]
                module.bias[len(b_old):] = 0.0
                module.bias[: len(b_old)] = b_old


def deepened_config(networks: dict, vae_blocks: int) -> dict:
    """The cards' networks with ``vae_blocks`` residual blocks in the encoder and the decoder."""
    out = copy.deepcopy(networks)
    for net in ("encoder", "decoder"):
        out[net]["config"]["n_blocks"] = vae_blocks
    return out


def deepen(shallow: nn.Sequential, deep: nn.Sequential) -> None:
    """Copy ``shallow`` into ``deep`` layer by layer, old blocks first; zero each new block's last conv.

    Layers are matched in order, except that ``deep``'s surplus ``ResBlock``s are skipped where the
    shallow network has a layer of another kind (or has run out): they are the new blocks.
    """
    old = list(shallow)
    i = 0
    with torch.no_grad():
        for layer in deep:
            if isinstance(layer, ResBlock) and not (i < len(old) and isinstance(old[i], ResBlock)):
                last = [m for m in layer.conv_block if isinstance(m, nn.Conv2d)][-1]
                last.weight.zero_()
                last.bias.zero_()
                continue
            layer.load_state_dict(old[i].state_dict(), strict=True)
            i += 1
    if i != len(old):
        raise ValueError("the deeper network does not contain the shallow one's layers")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="a folder with the trained quality.* (a run or the bundled lite folder)")
    ap.add_argument("out", type=Path, help="where the grown quality.* go (an --init-from folder)")
    ap.add_argument("--ngf", type=int, help="the new width (the old one's multiple or not)")
    ap.add_argument("--vae-blocks", type=int, help="deepen instead: residual blocks in the encoder and in the decoder")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t0 = time.perf_counter()
    torch.manual_seed(args.seed)
    if (args.ngf is None) == (args.vae_blocks is None):
        ap.error("give one of --ngf (widen) or --vae-blocks (deepen)")
    meta, tensors = load_checkpoint(args.run, "quality")
    if args.ngf is not None:
        networks = widened_config(meta["networks"], args.ngf)
        change = f"widened from {args.run} (ngf {meta['networks']['encoder']['config']['ngf']} -> {args.ngf})"
        flag = f"--ngf {args.ngf}"
    else:
        networks = deepened_config(meta["networks"], args.vae_blocks)
        change = f"deepened from {args.run} (vae blocks {meta['networks']['encoder']['config']['n_blocks']} -> {args.vae_blocks})"
        flag = f"--vae-blocks {args.vae_blocks}"
    out: dict[str, torch.Tensor] = {}
    for net in meta["networks"]:
        old = build_network(meta["networks"][net]["arch"], meta["networks"][net]["config"])
        old.load_state_dict({k[len(net) + 1:]: v for k, v in tensors.items() if k.startswith(net + ".")}, strict=True)
        new = build_network(networks[net]["arch"], networks[net]["config"])
        (grow if args.ngf is not None else deepen)(old, new)  # deepen copies an unchanged network as it is
        out.update({f"{net}.{k}": v for k, v in new.state_dict().items()})
    keep = {k: meta[k] for k in ("pipeline", "sources") if k in meta}
    note = f"{change} by weights/widen_lite.py, seed {args.seed}"
    command = f"python weights/widen_lite.py {args.run} {args.out} {flag} --seed {args.seed}"
    # a recipe step of its own: weights/bundle_lite.py follows init_from back through it to the narrow chain's card
    training = {"stage": "widen", "command": command, "step": 0, "wall_seconds": round(time.perf_counter() - t0, 1),
                "config": {"init_from": str(args.run)}}
    save_checkpoint(args.out, "quality", out, {"networks": networks, **keep, "description": note, "training": training})
    print(f"{args.out}/quality.safetensors: {sum(v.numel() for v in out.values())} parameters ({note})")


if __name__ == "__main__":
    main()
