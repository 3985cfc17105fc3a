"""Peak memory and time of one scratch-mode restore at full published size (random weights).

The published code cannot restore a 768×768 scratched photo in 20 GB, because its non-local
block materialises the N×N correlation matrix. Run:

    python benchmarks/scratch_memory.py --size 2048 --threads 2

It writes published-format checkpoints with the parity weight rule (stand-in weights: the
output is not a restoration), imports them, restores a random photo with a mask crossing it,
and prints seconds and the process's peak resident memory.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048, help="side of the square photo in pixels")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--mode", default="scratch", choices=["scratch", "hr"])
    args = parser.parse_args()

    import numpy as np
    import torch
    from PIL import Image

    from oldphoto import Restorer
    from oldphoto.weights.importer import import_official
    from tests.support.parity import write_published_mode

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        src = write_published_mode(args.mode, Path(tmp) / "published")
        import_official(src, Path(tmp) / "weights", models=[args.mode])
        restorer = Restorer(Path(tmp) / "weights", device="cpu", precision="fp32")
        restorer.model(args.mode)
        base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        rng = np.random.default_rng(0)
        photo = Image.fromarray(rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8))
        mask = Image.new("L", photo.size, 0)
        mask.paste(255, (args.size // 3, 0, args.size // 3 + max(4, args.size // 64), args.size))
        start = time.perf_counter()
        out = restorer.restore(photo, mask, mode=args.mode)
        seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    mp = args.size * args.size / 1e6
    print(f"mode={args.mode} size={args.size}x{args.size} ({mp:.2f} MP) threads={args.threads}")
    print(f"output {out.size[0]}x{out.size[1]}")
    print(f"seconds {seconds:.1f}  ({seconds / mp:.1f} s/MP)")
    print(f"peak RSS {peak:.0f} MiB (after loading weights: {base_rss:.0f} MiB)")


if __name__ == "__main__":
    main()
