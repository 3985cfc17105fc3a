"""Widen a trained lite quality chain without changing what it computes, to train on from there.

A wider chain trained from scratch would spend its first day of CPU steps catching up with the
narrow one. Instead every convolution is grown (net2wider-style): the trained weights keep
their block, the new channels get the network's default initialisation on their inputs and
exactly zero on every weight that carries them onward (into an old channel, a new one's
residual path aside, or the output). So the wide chain's output equals the narrow one's (up
to float rounding), and gradient still reaches every new weight (an output weight sees the
new channel's activation, so it leaves zero at the first step). Then::

    python weights/widen_lite.py runs/lite4 runs/wide96/init --ngf 96
    oldphoto train --config weights/runs/wide96/run.toml        # init_from = runs/wide96/init
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="a folder with the trained quality.* (a run or the bundled lite folder)")
    ap.add_argument("out", type=Path, help="where the widened quality.* go (an --init-from folder)")
    ap.add_argument("--ngf", type=int, required=True, help="the new width (the old one's multiple or not)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t0 = time.perf_counter()
    torch.manual_seed(args.seed)
    meta, tensors = load_checkpoint(args.run, "quality")
    networks = widened_config(meta["networks"], args.ngf)
    out: dict[str, torch.Tensor] = {}
    for net in meta["networks"]:
        narrow = build_network(meta["networks"][net]["arch"], meta["networks"][net]["config"])
        narrow.load_state_dict({k[len(net) + 1:]: v for k, v in tensors.items() if k.startswith(net + ".")}, strict=True)
        wide = build_network(networks[net]["arch"], networks[net]["config"])
        grow(narrow, wide)
        out.update({f"{net}.{k}": v for k, v in wide.state_dict().items()})
    keep = {k: meta[k] for k in ("pipeline", "sources") if k in meta}
    note = f"widened from {args.run} (ngf {meta['networks']['encoder']['config']['ngf']} -> {args.ngf}) by weights/widen_lite.py, seed {args.seed}"
    command = f"python weights/widen_lite.py {args.run} {args.out} --ngf {args.ngf} --seed {args.seed}"
    # a recipe step of its own: weights/bundle_lite.py follows init_from back through it to the narrow chain's card
    training = {"stage": "widen", "command": command, "step": 0, "wall_seconds": round(time.perf_counter() - t0, 1),
                "config": {"init_from": str(args.run)}}
    save_checkpoint(args.out, "quality", out, {"networks": networks, **keep, "description": note, "training": training})
    print(f"{args.out}/quality.safetensors: {sum(v.numel() for v in out.values())} parameters ({note})")


if __name__ == "__main__":
    main()
