"""How far the default output (exact input size) is from the published output, per photo.

The published code resizes each photo to a multiple of 4 (quality) or 16 (scratch modes)
and keeps that size; oldphoto's default reflect-pads to a multiple of 4 and crops back. This
script restores each photo both ways with the same weights, brings the published result to
the input size (bicubic, as a user would have to), and prints the mean and max absolute
difference in 8-bit levels. Where the published rounding is a no-op the two must be equal.

    python benchmarks/postprocess_difference.py ../shared/photos/old/*.png --mode quality

Weights: ``--weights DIR`` (e.g. imported real checkpoints), else full-size stand-in weights
from the parity rule — the difference then measures the geometry, not restoration quality.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", nargs="+", type=Path)
    parser.add_argument("--mode", default="quality", choices=["quality", "scratch", "hr"])
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import numpy as np
    import torch
    from PIL import Image

    from oldphoto import Restorer
    from oldphoto.weights.importer import import_official
    from tests.support.parity import write_published_detector, write_published_mode

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        weights = args.weights
        if weights is None:
            weights = Path(tmp) / "weights"
            import_official(write_published_mode(args.mode, Path(tmp) / "m"), weights, models=[args.mode])
            import_official(write_published_detector(Path(tmp) / "d"), weights, models=["detector"])
        restorer = Restorer(weights, device="cpu", precision="fp32")
        print(f"mode={args.mode} weights={'stand-in (parity rule)' if args.weights is None else weights}")
        for path in args.photos:
            photo = Image.open(path).convert("RGB")
            mask = restorer.detect(photo) if args.mode != "quality" else None
            default = restorer.restore(photo, mask, mode=args.mode)
            published = restorer.restore(photo, mask, mode=args.mode, postprocess="published")
            same_size = published.size == photo.size
            back = published if same_size else published.resize(photo.size, Image.Resampling.BICUBIC)
            diff = np.abs(np.asarray(default, dtype=np.int16) - np.asarray(back, dtype=np.int16))
            print(
                f"{path.name:>12} {photo.size[0]}x{photo.size[1]} published {published.size[0]}x{published.size[1]}"
                f" mean {diff.mean():6.2f} max {diff.max():3d} levels{'  (no resize: must be 0)' if same_size else ''}"
            )


if __name__ == "__main__":
    main()
