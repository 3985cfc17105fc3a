"""8-bit output error of a reduced precision against fp32, on real old photos.

Restores every photo under ``--photos`` (default ``../shared/photos``: ``old/`` in quality
mode, ``scratched/`` in scratch mode) once in fp32 and once in ``--precision``, and prints
the mean and max absolute difference of the 8-bit outputs, per photo and over all pixels.
For scale it also prints how much the fp32 output itself moves when the input is
re-quantized by up to half a level (uniform ±½-level dither on the network input). With
``--mask detected`` it also runs the detector in ``--precision`` and counts the mask pixels
that differ from the fp32 detector's::

    python benchmarks/precision.py                      # bf16 vs fp32 on the CPU
    python benchmarks/precision.py --device cuda --precision fp16

Scratched photos use one damage mask for both runs, so only the restoration's precision
differs: by default the fixed scratch pattern of ``standin.py`` (about 2% of the area, like
a real scratch mask), or with ``--mask detected`` what the detector finds in fp32 (the
stand-in detector flags nearly the whole photo, so that mostly measures inpainting). The weights are full-size stand-ins (see
``standin.py``), so the figures describe the arithmetic, not trained-weight behaviour.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from standin import DEFAULT_CACHE, PHOTOS, scratch_mask, standin_weights


def photos(folder: Path, subsets: list[str]) -> list[tuple[Path, str]]:
    """(photo, mode) pairs: ``old/`` photos in quality mode, ``scratched/`` in scratch mode."""
    modes = {"old": "quality", "scratched": "scratch"}
    from oldphoto.imageio import READABLE_EXTENSIONS

    return [(p, modes[s]) for s in subsets for p in sorted((folder / s).glob("*")) if p.suffix.lower() in READABLE_EXTENSIONS]


def fp32_dither_change(restorer, image, mask, mode: str) -> float:
    """Mean 8-bit change of ``restorer``'s (fp32) output under ±½-level dither of its input."""
    import torch

    from oldphoto.pipeline import finish, prepare, run_networks

    meta, bundle = restorer.model(mode)
    prepared = prepare(image, mask, meta["pipeline"])
    noise = (torch.rand(prepared.x.shape, generator=torch.Generator().manual_seed(0)) * 2 - 1) / 255.0
    device = restorer.device
    hole = prepared.mask.to(device) if prepared.mask is not None else None
    with torch.inference_mode():
        outs = [finish(run_networks(bundle, x.to(device), hole)["output"], prepared).astype(np.int16)
                for x in (prepared.x, prepared.x + noise)]
    return float(np.abs(outs[0] - outs[1]).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=PHOTOS)
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp16"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--mask", default="synthetic", choices=["detected", "synthetic"])
    parser.add_argument("--subsets", nargs="+", default=["old", "scratched"], choices=["old", "scratched"])
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--weights", type=Path, default=None, help="oldphoto weights folder (default: stand-ins)")
    args = parser.parse_args()

    import torch
    from PIL import Image

    from oldphoto import Restorer

    torch.set_num_threads(args.threads)
    pairs = photos(args.photos, args.subsets)
    if not pairs:
        raise SystemExit(f"no photos under {args.photos}/old or {args.photos}/scratched")
    weights = args.weights or standin_weights(["quality", "scratch", "detector"], args.cache)
    reference = Restorer(weights, device=args.device, precision="fp32")
    reduced = Restorer(weights, device=args.device, precision=args.precision)
    print(f"{args.precision} vs fp32 on {args.device}, 8-bit output levels")
    print(f"{'photo':22} {'mode':8} {'size':>10} {'mean':>6} {'max':>4} {'>1 lvl':>7} {'dither':>6} {'fp32 s':>7} {'red. s':>6}")
    total_abs, total_n, worst = 0.0, 0, 0
    mask_diff, mask_n = 0, 0
    for path, mode in pairs:
        image = Image.open(path).convert("RGB")
        mask = None
        if mode == "scratch":
            mask = reference.detect(image) if args.mask == "detected" else scratch_mask(*image.size)
            if args.mask == "detected":
                found = np.asarray(mask)
                flips = int((found != np.asarray(reduced.detect(image))).sum())
                mask_diff, mask_n = mask_diff + flips, mask_n + found.size
                print(f"{'':22} detector: {flips} of {found.size} mask pixels differ", flush=True)
            if not np.asarray(mask).any():
                mask = scratch_mask(*image.size)
        start = time.perf_counter()
        a = np.asarray(reference.restore(image, mask, mode=mode), dtype=np.int16)
        t_ref = time.perf_counter() - start
        start = time.perf_counter()
        b = np.asarray(reduced.restore(image, mask, mode=mode), dtype=np.int16)
        t_red = time.perf_counter() - start
        diff = np.abs(a - b)
        dither = fp32_dither_change(reference, image, mask, mode)
        total_abs += float(diff.sum())
        total_n += diff.size
        worst = max(worst, int(diff.max()))
        name = f"{path.parent.name}/{path.name}"
        print(f"{name:22} {mode:8} {image.width:>4}x{image.height:<5} {diff.mean():6.3f} {diff.max():4d} "
              f"{(diff > 1).mean():7.2%} {dither:6.2f} {t_ref:7.1f} {t_red:6.1f}", flush=True)
    print(f"all photos: mean {total_abs / total_n:.3f} levels, max {worst} levels")
    if mask_n:
        print(f"detector masks: {mask_diff} of {mask_n} pixels differ ({mask_diff / mask_n:.4%})")


if __name__ == "__main__":
    main()
