"""Seconds for a 1-MP restore at candidate ``lite`` widths (the ≤ 3 s gate of issue 14).

Builds random-weight residual ``quality`` checkpoints at each width (speed does not depend
on weight values), loads them through the real :class:`oldphoto.Restorer` and restores a
1024×1024 photo, fp32, ``--threads`` threads (default 2); prints the best of ``--repeat``
after a warm-up, with the file size and the load average (a loaded machine reads slow)::

    python benchmarks/lite_speed.py                       # ngf 16 and 32, 2 blocks; mapping 64/2
    python benchmarks/lite_speed.py --widths 32:2:64:2 24:2:64:2 32:2:32:2:1:32
    python benchmarks/lite_speed.py --weights oldphoto/weights/lite   # a trained checkpoint as it is
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


def networks(ngf: int, vae_blocks: int, width: int, blocks: int, n_down: int = 2, base: int = 64) -> dict:
    vae = {"ngf": ngf, "n_downsample": n_down, "n_blocks": vae_blocks}
    return {
        "encoder": {"arch": "vae_encoder", "config": {"in_channels": 3, **vae}},
        "mapping": {"arch": "mapping_quality", "config": {"in_channels": ngf, "base": base, "width": width, "n_blocks": blocks}},
        "decoder": {"arch": "vae_decoder", "config": {"out_channels": 3, **vae}},
    }


def describe(nets: dict) -> str:
    """``VAE 24/2 (0× down), mapping 24/1 + skip (base 24)`` from a card's ``networks``."""
    vae, mapping = nets["encoder"]["config"], nets["mapping"]["config"]
    skip = " + skip" if mapping.get("skip") else ""
    return (f"VAE {vae['ngf']}/{vae['n_blocks']} ({vae['n_downsample']}× down), "
            f"mapping {mapping['width']}/{mapping['n_blocks']}{skip} (base {mapping['base']})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--widths", nargs="+", default=["16:2:64:2", "32:2:64:2"], help="NGF:VAE_BLOCKS:WIDTH:BLOCKS[:N_DOWNSAMPLE[:BASE]] (defaults 2 and 64)")
    ap.add_argument("--weights", type=Path, nargs="*", default=[], help="time these trained quality checkpoint folders instead of random widths")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--size", type=int, default=1024)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8))
    folders = []
    for spec in [] if args.weights else args.widths:
        ngf, vb, width, blocks, *rest = (int(v) for v in spec.split(":"))
        nets = networks(ngf, vb, width, blocks, *rest)
        folder = Path(tempfile.mkdtemp(prefix="lite-speed-"))
        torch.manual_seed(0)
        save_checkpoint(folder, "quality", build_bundle(nets).state_dict(), {"networks": nets, "pipeline": PIPELINE})
        folders.append(folder)
    for folder in [*folders, *args.weights]:
        mb = (folder / "quality.safetensors").stat().st_size / 1e6
        r = Restorer(folder, device="cpu", precision="fp32")
        r.restore(photo.resize((256, 256)), mode="quality")
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            r.restore(photo, mode="quality")
            times.append(time.perf_counter() - t0)
        mp = args.size * args.size / 1e6
        label = folder.name if folder in args.weights else "random"
        print(f"{label}: {describe(read_meta(folder, 'quality')['networks'])}: {mb:.1f} MB, {min(times) / mp:.2f} s/MP best of "
              f"{[round(t, 2) for t in times]} s, {args.threads} threads, load {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
