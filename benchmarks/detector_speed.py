"""Scratch detection time for one or more detector folders, side by side on the same photos.

Each card runs exactly as ``restore --detect-scratches`` does (``damage_probability``, then the
card's cut and dilation); the folders take turns, and the best of ``--repeats`` is printed, so
that two cards measured in one run can be compared on a noisy machine. Example (det47, bundled
until commit 93363e2, against the bundled detector)::

    mkdir -p runs/det47 && for f in detector.json detector.safetensors; do
        git show 93363e2:oldphoto/weights/lite/$f > runs/det47/$f; done
    python benchmarks/detector_speed.py --weights runs/det47 oldphoto/weights/lite \\
        --photos ../shared/photos/old/b.png ../shared/photos/scratched/a.png
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from oldphoto.detection import damage_probability, mask_from_probability  # noqa: E402
from scratch_detection import load_detector  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", type=Path, nargs="+", required=True, help="detector folders (detector.json + .safetensors)")
    ap.add_argument("--photos", type=Path, nargs="+", required=True)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    detectors = {}
    for folder in args.weights:  # loaded as restore loads them (fp32 on the CPU)
        meta, bundle = load_detector(folder)
        detectors[str(folder)] = (meta["pipeline"], bundle["unet"])
    print(f"detection seconds per photo, fp32, {args.threads} threads, best of {args.repeats}")
    for path in args.photos:
        with Image.open(path) as im:
            photo = im.convert("RGB")
        best = dict.fromkeys(detectors, float("inf"))
        for _ in range(args.repeats):
            for name, (card, unet) in detectors.items():
                start = time.perf_counter()
                with torch.inference_mode():
                    mask_from_probability(damage_probability(unet, photo, card, "default"), card)
                best[name] = min(best[name], time.perf_counter() - start)
        print(f"{path} ({photo.width}x{photo.height}): " + ", ".join(f"{name} {s:.3f} s" for name, s in best.items()), flush=True)


if __name__ == "__main__":
    main()
