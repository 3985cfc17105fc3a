"""Average the weights of two runs of one network, to bundle or train on.

A fine-tune that learns something new (dark scratches) often unlearns a little of what its
starting point knew (where a thin white crack crosses black cloth). Two checkpoints on one
fine-tuning path can be averaged weight by weight: the mixture usually keeps most of what each
end knows, at no cost when it runs (one network). The mixture is measured like any run before
it is bundled (``weights/README.md``, step 17)::

    python weights/average_runs.py runs/det39 runs/det33-final runs/det41 --name detector --weight 0.7

Both runs must hold the same networks with the same configs; the first run's card (pipeline,
description) is kept, and its ``init_from`` chain is what ``weights/bundle_lite.py`` follows
for the recipe, so the first run should be the one fine-tuned from the second.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from oldphoto.fsutil import sha256_file  # noqa: E402
from oldphoto.weights.checkpoint import checkpoint_paths, load_checkpoint, save_checkpoint  # noqa: E402


def average(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor], weight: float) -> dict[str, torch.Tensor]:
    """``weight`` × first + (1 − ``weight``) × second for float tensors (in float64, stored as the first's dtype);
    integer tensors (batch-norm step counts) are the first's."""
    if first.keys() != second.keys():
        raise ValueError(f"the runs hold different tensors: {sorted(first.keys() ^ second.keys())[:4]}")
    out = {}
    for key, a in first.items():
        b = second[key]
        if a.shape != b.shape:
            raise ValueError(f"{key}: shapes differ ({tuple(a.shape)} vs {tuple(b.shape)})")
        if a.is_floating_point():
            out[key] = (weight * a.double() + (1.0 - weight) * b.double()).to(a.dtype)
        else:
            out[key] = a.clone()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("first", type=Path, help="a run folder (its card is kept; fine-tuned from the second)")
    ap.add_argument("second", type=Path, help="the other run folder, the same networks")
    ap.add_argument("out", type=Path, help="where the averaged NAME.* go")
    ap.add_argument("--name", choices=("quality", "scratch", "detector"), default="detector")
    ap.add_argument("--weight", type=float, required=True, help="the first run's share, between 0 and 1")
    args = ap.parse_args()
    if not 0.0 <= args.weight <= 1.0:
        ap.error(f"--weight {args.weight}: give a share between 0 and 1")
    t0 = time.perf_counter()
    meta, first = load_checkpoint(args.first, args.name)
    meta2, second = load_checkpoint(args.second, args.name)
    if meta["networks"] != meta2["networks"]:
        sys.exit(f"{args.second}: its networks differ from {args.first}'s ({args.name}.json 'networks')")
    try:
        tensors = average(first, second, args.weight)
    except ValueError as exc:
        sys.exit(f"{args.second}: {exc}")
    # each run's own training record (what it ran, on which photos), so the card says what the average learnt from
    sources = [{"run": str(run), "weight": share, "sha256": sha256_file(checkpoint_paths(run, args.name)[0]),
                **{k: card["training"][k] for k in ("stage", "command", "step", "steps_planned", "wall_seconds", "config", "data")
                   if k in card.get("training", {})}}
               for run, share, card in ((args.first, args.weight, meta), (args.second, round(1.0 - args.weight, 6), meta2))]
    command = f"python weights/average_runs.py {args.first} {args.second} {args.out} --name {args.name} --weight {args.weight}"
    # a recipe step of its own: weights/bundle_lite.py follows init_from back through the first run's chain
    training = {"stage": "average", "command": command, "step": 0, "wall_seconds": round(time.perf_counter() - t0, 1),
                "config": {"init_from": str(args.first)}, "averaged": sources}
    keep = {k: meta[k] for k in ("pipeline", "sources", "license", "origin") if k in meta}  # the licence comes along
    note = f"{args.weight:g} × {args.first} + {1.0 - args.weight:g} × {args.second}, by weights/average_runs.py"
    save_checkpoint(args.out, args.name, tensors, {"networks": meta["networks"], **keep, "description": note, "training": training})
    print(f"{args.out}/{args.name}.safetensors: {note}")


if __name__ == "__main__":
    main()
