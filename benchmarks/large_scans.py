"""Large scans: seconds per megapixel and peak memory, tiled vs untiled, per mode.

    python benchmarks/large_scans.py --sizes 4 16 64 --modes quality hr --weights tiny
    python benchmarks/large_scans.py --sizes 0.25 1 --modes quality --weights full

Every measurement runs in a fresh child process, so its peak RSS (and on CUDA its peak
device memory) is its own. A child loads the weights, warms up on a small photo, then
restores one square photo of the given megapixels once. Tiled runs use ``--tile`` and
``--max-memory``; the untiled run is made only where the planner's estimate of it fits the
free memory. The ratio column is tiled seconds over untiled seconds (target ≤ 1.15). A numeric ``--tile``
forces tiles; with ``--tile auto`` the planner may run a photo that fits untiled (noted).

``--weights tiny`` uses the tiny random-weight test models (their cost is memory traffic,
not arithmetic, so they are the hard case for the ratio); ``--weights full`` uses the
published networks' shapes (see ``standin.py``; about 12 s/MP for quality on a 2-core CPU,
so keep full-size sizes small there). Scratch mode attends every latent position to every
other (cost grows with the square of the area), so it is skipped above ``--scratch-max-mp``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def weights_folder(kind: str) -> Path:
    """Tiny random weights (made once into a temp folder) or the full-size stand-ins."""
    if kind == "full":
        from benchmarks.standin import standin_weights

        return standin_weights(["quality", "scratch", "hr"])
    folder = Path(tempfile.gettempdir()) / "oldphoto-bench-tiny" / "weights"
    if not (folder / "quality.json").exists():
        from tests.support.tiny import make_tiny_weights

        make_tiny_weights(folder)
    return folder


def child(args: argparse.Namespace) -> None:
    """Restore one photo and print a JSON line: seconds, peak RSS, peak device memory, plan."""
    import resource
    import time

    import torch

    from benchmarks.standin import sample_photo, scratch_mask
    from oldphoto import Restorer
    from oldphoto.tiling import plan

    torch.set_num_threads(args.threads)
    side = int(round((args.mp * 1e6) ** 0.5 / 4)) * 4
    restorer = Restorer(args.weights_dir, device=args.device, precision=args.precision,
                        tile=args.tile, max_memory=args.max_memory)
    use_mask = args.mode != "quality"
    restorer.restore(sample_photo(128, 128), scratch_mask(128, 128) if use_mask else None, mode=args.mode)
    photo = sample_photo(side, side)
    mask = scratch_mask(side, side) if use_mask else None
    _, bundle = restorer.model(args.mode)
    chosen = plan(bundle, side, side, restorer.device, args.tile, args.max_memory)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    restorer.restore(photo, mask, mode=args.mode)
    seconds = time.perf_counter() - start
    device_peak = torch.cuda.max_memory_allocated() if args.device.startswith("cuda") else None
    print(json.dumps({
        "seconds": seconds, "side": side, "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "device_peak": device_peak, "tiled": chosen.tiled, "tile": chosen.tile, "estimate": chosen.estimate,
    }))


def untiled_fits(weights: Path, mode: str, mp: float, device: str) -> bool:
    """Whether the planner would run this photo untiled with the automatic budget."""
    import torch

    from oldphoto import Restorer
    from oldphoto.tiling import plan

    side = int(round((mp * 1e6) ** 0.5 / 4)) * 4
    restorer = Restorer(weights, device=device, precision="fp32")
    _, bundle = restorer.model(mode)
    return not plan(bundle, side, side, torch.device(device), "auto", "auto").tiled


def measure(args: argparse.Namespace, mode: str, mp: float, tile: str, memory: str) -> dict | None:
    cmd = [sys.executable, __file__, "--child", "--weights-dir", str(args.weights_dir), "--mode", mode,
           "--mp", str(mp), "--tile", tile, "--max-memory", memory, "--device", args.device,
           "--precision", args.precision, "--threads", str(args.threads)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
    if done.returncode != 0:
        print(f"  {mode} {mp} MP tile={tile}: failed: {done.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=float, default=[4, 16, 64], help="megapixels")
    parser.add_argument("--modes", nargs="+", default=["quality", "scratch", "hr"])
    parser.add_argument("--weights", choices=["tiny", "full"], default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tile", default="1024")
    parser.add_argument("--max-memory", default="auto")
    parser.add_argument("--scratch-max-mp", type=float, default=4)
    parser.add_argument("--no-untiled", action="store_true", help="skip the untiled runs")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--weights-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--mp", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    args.weights_dir = weights_folder(args.weights)
    print(f"weights={args.weights} device={args.device} precision={args.precision} threads={args.threads} "
          f"tile={args.tile} max-memory={args.max_memory}")
    header = (f"{'mode':8} {'MP':>5} {'tiled s/MP':>10} {'tiled RSS':>10} {'tiled dev':>10} "
              f"{'untiled s/MP':>12} {'untiled RSS':>11} {'untiled dev':>11} {'ratio':>6}")
    print(header)
    gb = float(1 << 30)
    for mode in args.modes:
        for mp in args.sizes:
            if mode == "scratch" and mp > args.scratch_max_mp:
                print(f"{mode:8} {mp:5g}  skipped (whole-image attention; auto uses hr above 1 MP)")
                continue
            tiled = measure(args, mode, mp, args.tile, args.max_memory)
            untiled = None
            if not args.no_untiled and untiled_fits(args.weights_dir, mode, mp, args.device):
                untiled = measure(args, mode, mp, "off", "auto")
            real_mp = (tiled or untiled or {"side": 0})["side"] ** 2 / 1e6 or mp
            cells = [f"{mode:8}", f"{real_mp:5.1f}"]
            if tiled and not tiled["tiled"]:
                print(f"{mode:8} {mp:5g}  the planner ran this untiled (it fits --max-memory); pass --tile N to force tiles")
            if tiled:
                dev = f"{tiled['device_peak'] / gb:.2f}GB" if tiled["device_peak"] is not None else "-"
                cells += [f"{tiled['seconds'] / real_mp:10.3f}", f"{tiled['peak_rss'] / gb:9.2f}G", f"{dev:>10}"]
            else:
                cells += [f"{'failed':>10}", f"{'':>10}", f"{'':>10}"]
            if untiled:
                udev = f"{untiled['device_peak'] / gb:.2f}GB" if untiled["device_peak"] is not None else "-"
                cells += [f"{untiled['seconds'] / real_mp:12.3f}", f"{untiled['peak_rss'] / gb:10.2f}G", f"{udev:>11}"]
                cells += [f"{tiled['seconds'] / untiled['seconds']:6.2f}" if tiled else f"{'':>6}"]
            else:
                cells += [f"{'does not fit':>12}", f"{'':>11}", f"{'':>11}", f"{'':>6}"]
            print(" ".join(cells), flush=True)


if __name__ == "__main__":
    main()
