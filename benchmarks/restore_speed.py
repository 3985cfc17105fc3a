"""Seconds per megapixel and peak memory of each restoration mode at full published size.

    python benchmarks/restore_speed.py --sizes 512x512 1024x768 --modes quality scratch hr

Weights are full-size stand-ins from the parity weight rule, imported through the real
import path (the speed of a network does not depend on its weight values; the output is not
a restoration). Each mode runs once to warm up, then ``--repeat`` times; the median is
printed. Peak memory is the process's peak RSS so far (it only grows, so run one mode per
process with ``--modes`` for a clean per-mode figure).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["512x512", "1024x768"])
    parser.add_argument("--modes", nargs="+", default=["quality", "scratch", "hr"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()

    import numpy as np
    import torch
    from PIL import Image

    from oldphoto import Restorer
    from oldphoto.importer import import_official
    from tests.support.parity import write_published_mode

    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, device {args.device}, precision {args.precision}")
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "weights"
        for mode in args.modes:
            import_official(write_published_mode(mode, Path(tmp) / mode), weights, models=[mode])
        restorer = Restorer(weights, device=args.device, precision=args.precision)
        rng = np.random.default_rng(0)
        for size in args.sizes:
            w, h = (int(v) for v in size.lower().split("x"))
            photo = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
            mask = Image.new("L", (w, h), 0)
            mask.paste(255, (w // 3, 0, w // 3 + max(4, w // 64), h))
            for mode in args.modes:
                m = mask if mode != "quality" else None
                restorer.restore(photo, m, mode=mode)
                times = []
                for _ in range(args.repeat):
                    start = time.perf_counter()
                    restorer.restore(photo, m, mode=mode)
                    times.append(time.perf_counter() - start)
                sec = statistics.median(times)
                mp = w * h / 1e6
                peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                print(f"{mode:>8} {w}x{h} ({mp:.2f} MP): {sec:7.2f} s  {sec / mp:6.2f} s/MP  peak RSS {peak:6.0f} MiB")


if __name__ == "__main__":
    main()
