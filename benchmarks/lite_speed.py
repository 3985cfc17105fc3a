"""Seconds for a 1-MP restore at candidate ``lite`` widths (the ≤ 3 s gate of issue 14).

Builds random-weight residual ``quality`` checkpoints at each width (speed does not depend
on weight values), loads them through the real :class:`oldphoto.Restorer` and restores a
1024×1024 photo, fp32, ``--threads`` threads (default 2); prints the best of ``--repeat``
after a warm-up, with the file size and the load average (a loaded machine reads slow)::

    python benchmarks/lite_speed.py                       # ngf 16 and 32, 2 blocks; mapping 64/2
    python benchmarks/lite_speed.py --widths 32:2:64:2 24:2:64:2 32:2:32:2:1:32
    python benchmarks/lite_speed.py --widths 64:1:64:0:0:32:s2 96:2:96:1:0:48:s2   # half resolution (stem s2)
    python benchmarks/lite_speed.py --weights oldphoto/weights/lite   # a trained checkpoint as it is
    python benchmarks/lite_speed.py --weights oldphoto/weights/lite --mode scratch   # + detector

``--mode scratch`` times a trained scratch checkpoint with a fixed procedural damage mask
(the non-local block's cost grows with the square of the area, so it is timed at the same
size), and the folder's detector, when it has one, on the same photo.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from oldphoto import Restorer  # noqa: E402
from oldphoto.models import build_bundle  # noqa: E402
from oldphoto.weights.checkpoint import read_meta, save_checkpoint  # noqa: E402

PIPELINE = {"multiple": 4, "resample": "bilinear", "uses_mask": False, "mask_dilation": 0, "residual": True}


def networks(ngf: int, vae_blocks: int, width: int, blocks: int, n_down: int = 2, base: int = 64, stem: str = "") -> dict:
    """A quality chain's ``networks``; ``stem`` "s2" is lite's half-resolution wiring (2×2 stem, no norms, latent skip)."""
    vae: dict = {"ngf": ngf, "n_downsample": n_down, "n_blocks": vae_blocks}
    mapping: dict = {"in_channels": ngf, "base": base, "width": width, "n_blocks": blocks}
    if stem:
        vae.update(norm="none", stem=stem)
        mapping.update(norm="none", skip=True)
    return {
        "encoder": {"arch": "vae_encoder", "config": {"in_channels": 3, **vae}},
        "mapping": {"arch": "mapping_quality", "config": mapping},
        "decoder": {"arch": "vae_decoder", "config": {"out_channels": 3, **vae}},
    }


def describe(nets: dict) -> str:
    """``VAE 24/2 (0× down), mapping 24/1 + skip (base 24)`` from a card's ``networks``."""
    vae, mapping = nets["encoder"]["config"], nets["mapping"]["config"]
    skip = " + skip" if mapping.get("skip") else ""
    skip += f", non-local {mapping['nl_blocks']}" if "nl_blocks" in mapping else ""
    stem = f", stem {vae['stem']}" if vae.get("stem") else ""
    return (f"VAE {vae['ngf']}/{vae['n_blocks']} ({vae['n_downsample']}× down{stem}), "
            f"mapping {mapping['width']}/{mapping['n_blocks']}{skip} (base {mapping['base']})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--widths", nargs="+", default=["16:2:64:2", "32:2:64:2"], help="NGF:VAE_BLOCKS:WIDTH:BLOCKS[:N_DOWNSAMPLE[:BASE[:s2]]] (defaults 2 and 64; s2: half resolution)")
    ap.add_argument("--weights", type=Path, nargs="*", default=[], help="time these trained checkpoint folders instead of random widths")
    ap.add_argument("--mode", choices=("quality", "scratch"), default="quality", help="which of their models to time (scratch: with --weights)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--size", type=int, default=1024)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8))
    mask = None
    if args.mode == "scratch":
        from oldphoto.training.degrade import Damage, add_damage

        if not args.weights:
            sys.exit("--mode scratch times trained checkpoints: give --weights DIR")
        mask = Image.fromarray(add_damage(np.asarray(photo), np.random.default_rng(0), Damage())[1])
    folders = []
    for spec in [] if args.weights else args.widths:
        fields = spec.split(":")
        stem = fields.pop() if fields[-1] == "s2" else ""
        ngf, vb, width, blocks, *rest = (int(v) for v in fields)
        nets = networks(ngf, vb, width, blocks, *rest, stem=stem)
        folder = Path(tempfile.mkdtemp(prefix="lite-speed-"))
        torch.manual_seed(0)
        save_checkpoint(folder, "quality", build_bundle(nets).state_dict(), {"networks": nets, "pipeline": PIPELINE})
        folders.append(folder)
    mp = args.size * args.size / 1e6
    for folder in [*folders, *args.weights]:
        mb = (folder / f"{args.mode}.safetensors").stat().st_size / 1e6
        r = Restorer(folder, device="cpu", precision="fp32")
        small = mask.resize((256, 256)) if mask is not None else None
        r.restore(photo.resize((256, 256)), small, mode=args.mode)
        times = best_of(args.repeat, lambda r=r: r.restore(photo, mask, mode=args.mode))
        label = folder.name if folder in args.weights else "random"
        print(f"{label}: {args.mode} {describe(read_meta(folder, args.mode)['networks'])}: {mb:.1f} MB, {min(times) / mp:.2f} s/MP "
              f"best of {[round(t, 2) for t in times]} s, {args.threads} threads, load {os.getloadavg()[0]:.1f}", flush=True)
        if args.mode == "scratch" and (folder / "detector.json").is_file():
            r.detect(photo)
            times = best_of(args.repeat, lambda r=r: r.detect(photo))
            print(f"{label}: detector ({(folder / 'detector.safetensors').stat().st_size / 1e6:.2f} MB): {min(times):.2f} s per "
                  f"{args.size}×{args.size} photo (the UNet sees 256 px on the short side)", flush=True)


def best_of(repeat: int, fn) -> list[float]:
    """Wall times of ``repeat`` calls of ``fn``."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


if __name__ == "__main__":
    main()
