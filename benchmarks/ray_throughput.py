"""Ray engine throughput against the local engine on the same folder, in one run.

Writes ``--count`` JPEGs, then restores the folder (quality mode, stand-in full-size weights)
with the local engine (``batch.run``, ``--threads`` torch threads), and with the Ray engine
at 1 worker (``--threads`` CPUs, so as many torch threads) and 2 workers (half each), on a
private loopback Ray started here. Prints photos per minute for each and its ratio to local,
both end to end and with the workers' start-up left out, plus the fixed overheads: starting
the cluster (``ray.init``) and starting the actors (each builds its Restorer). It also times
one photo's decode and encode, the CPU work a GPU worker still does per photo::

    python benchmarks/ray_throughput.py --count 6 --size 320x240 --precision fp32
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from standin import DEFAULT_CACHE, sample_photo, standin_weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=8)
    parser.add_argument("--size", default="1024x768", help="WIDTHxHEIGHT of each JPEG")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--threads", type=int, default=2, help="CPU cores to use, shared by the workers")
    parser.add_argument("--weights", type=Path, default=None)
    args = parser.parse_args()

    import torch

    from oldphoto import Restorer, batch
    from oldphoto.engines import ray as ray_engine
    from oldphoto.imageio import save_image
    from oldphoto.inputs import load_photo

    torch.set_num_threads(args.threads)
    width, _, height = args.size.partition("x")
    size = (int(width), int(height))
    weights = args.weights or standin_weights(["quality"], DEFAULT_CACHE)
    options = {"weights": weights, "device": "cpu", "precision": args.precision, "faces": False}
    settings = batch.Settings(mode="quality")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in"
        src.mkdir()
        base = sample_photo(*size)
        for i in range(args.count):
            save_image(base.rotate(i % 4 * 90, expand=False), src / f"scan{i:03d}.jpg")

        # CPU work per photo besides the networks: decode the scan, encode the result.
        start = time.perf_counter()
        photo = load_photo(src / "scan000.jpg")
        decode = time.perf_counter() - start
        start = time.perf_counter()
        save_image(photo.image, Path(tmp) / "encoded.jpg", exif=photo.exif, icc_profile=photo.icc_profile)
        encode = time.perf_counter() - start

        def fresh(name: str) -> list[batch.Job]:
            out = Path(tmp) / name
            shutil.rmtree(out, ignore_errors=True)
            return batch.plan(src, out)

        start = time.perf_counter()
        restorers = [Restorer(**options)]  # a list, so the local restorer can be freed before Ray starts
        local_records = batch.run(fresh("local"), lambda: restorers[0], settings)
        local = time.perf_counter() - start
        assert all(r.status == "restored" for r in local_records)
        print(f"local: {local:.1f} s; decode {decode * 1000:.0f} ms, encode {encode * 1000:.0f} ms", flush=True)
        restorers.clear()

        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        import ray

        start = time.perf_counter()
        ray.init(
            address="local", num_cpus=args.threads, include_dashboard=False, _node_ip_address="127.0.0.1",
            object_store_memory=100 * 2**20, logging_level=logging.ERROR, log_to_driver=False,
        )
        cluster_start = time.perf_counter() - start
        print(f"ray.init: {cluster_start:.1f} s", flush=True)
        results = {}
        for workers in (1, 2):
            cluster = ray_engine.Cluster(workers=workers, cpus_per_worker=args.threads / workers)
            ready: list[float] = []
            start = time.perf_counter()
            records = ray_engine.run(
                fresh(f"ray{workers}"), settings, options, cluster, on_workers=lambda _: ready.append(time.perf_counter())
            )
            total = time.perf_counter() - start
            assert all(r.status == "restored" for r in records), [r.error for r in records]
            results[workers] = (total, ready[0] - start)
            print(f"ray {workers}: {total:.1f} s, actors ready after {ready[0] - start:.1f} s", flush=True)
        ray.shutdown()

    per_min = 60 * args.count
    mp = size[0] * size[1] / 1e6
    print(f"{args.count} photos of {size[0]}x{size[1]} ({mp:.2f} MP), quality, {args.precision}, {args.threads} CPU threads")
    print(f"decode {decode * 1000:.0f} ms, encode (JPEG q95) {encode * 1000:.0f} ms per photo")
    print(f"{'engine':<22} {'photos/min':>10} {'vs local':>9} {'excl. start':>12} {'vs local':>9}")
    print(f"{'local':<22} {per_min / local:>10.2f} {1:>9.2f} {'':>12} {'':>9}")
    for workers, (total, actors) in results.items():
        steady = per_min / (total - actors)
        print(f"{f'ray, {workers} worker(s)':<22} {per_min / total:>10.2f} {local / total:>9.2f} {steady:>12.2f} "
              f"{steady / (per_min / local):>9.2f}")
    print(f"cluster start (ray.init, private, loopback): {cluster_start:.1f} s")
    for workers, (_, actors) in results.items():
        print(f"actors start ({workers} worker(s), each builds a Restorer): {actors:.1f} s")
    print(f"local per-photo cost: {local / args.count:.2f} s ({local / args.count / mp:.2f} s/MP, including the model load)")


if __name__ == "__main__":
    main()
