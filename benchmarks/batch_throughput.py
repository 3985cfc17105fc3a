"""Batch throughput: does decoding and encoding overlap with compute?

Writes ``--count`` 1-MP JPEGs, then restores them three ways with one Restorer and prints
seconds per photo and the efficiency against pure compute (the target is ≥ 95%):

* ``compute``  — photos decoded beforehand, outputs never written: the networks alone;
* ``serial``   — load, restore, save one after the other;
* ``overlap``  — ``oldphoto.prefetch``: the next photos decode on a background thread and
  finished ones encode on another while the current one computes;
* ``batch``    — ``oldphoto.batch.plan`` + ``run`` on the folder, which is what
  ``oldphoto restore IN_FOLDER OUT_FOLDER`` does (read-ahead, write-behind, records).

Loading and saving go through ``oldphoto.inputs`` and ``oldphoto.imageio`` as a batch run
does. ``--format png`` writes PNGs (slower to encode than JPEG, so the overlap matters more)::

    python benchmarks/batch_throughput.py --count 6 --precision bf16 --format png
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from standin import DEFAULT_CACHE, sample_photo, standin_weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=6)
    parser.add_argument("--size", default="1152x864", help="WIDTHxHEIGHT of each JPEG (about 1 MP)")
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--format", default="jpeg", choices=["jpeg", "png"], help="output format")
    args = parser.parse_args()

    import torch

    from oldphoto import Restorer, batch
    from oldphoto.imageio import save_image
    from oldphoto.inputs import load_photo
    from oldphoto.prefetch import WriteBehind, prefetch

    torch.set_num_threads(args.threads)
    width, _, height = args.size.partition("x")
    size = (int(width), int(height))
    weights = args.weights or standin_weights(["quality"], DEFAULT_CACHE)
    restorer = Restorer(weights, device=args.device, precision=args.precision)
    restorer.model("quality")
    suffix = "png" if args.format == "png" else "jpg"
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in", Path(tmp) / "out"
        src.mkdir()
        dst.mkdir()
        base = sample_photo(*size)
        paths = []
        for i in range(args.count):
            path = src / f"photo_{i:03d}.jpg"
            base.rotate(180 * (i % 2)).save(path, quality=92)
            paths.append(path)
        restorer.restore(load_photo(paths[0]).image, mode="quality")  # warm-up at this size

        decoded = [load_photo(p).image for p in paths]
        start = time.perf_counter()
        for image in decoded:
            restorer.restore(image, mode="quality")
        compute = time.perf_counter() - start

        start = time.perf_counter()
        for path in paths:
            save_image(restorer.restore(load_photo(path).image, mode="quality"), dst / f"s_{path.stem}.{suffix}")
        serial = time.perf_counter() - start

        start = time.perf_counter()
        with WriteBehind() as writer:
            for item in prefetch(paths, load_photo):
                restored = restorer.restore(item.get().image, mode="quality")
                writer.submit(save_image, restored, dst / f"o_{item.source.stem}.{suffix}", source=item.source)
        overlap = time.perf_counter() - start
        assert not writer.failures, writer.failures

        start = time.perf_counter()
        records = batch.run(batch.plan(src, Path(tmp) / "batch", format=args.format), lambda: restorer,
                            batch.Settings(mode="quality"))
        through_batch = time.perf_counter() - start
        assert [r.status for r in records] == ["restored"] * args.count, records

    mp = size[0] * size[1] / 1e6
    print(f"{args.count} JPEGs of {size[0]}x{size[1]} ({mp:.2f} MP) to {args.format.upper()}, quality mode, "
          f"{restorer.precision} on {args.device}")
    for name, seconds in (("compute", compute), ("serial", serial), ("overlap", overlap), ("batch", through_batch)):
        print(f"  {name:8} {seconds / args.count:6.2f} s/photo   efficiency {compute / seconds:6.1%}")


if __name__ == "__main__":
    main()
