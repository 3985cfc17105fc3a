"""Start-up costs: ``oldphoto --help``, importing torch, and loading each mode's weights.

``oldphoto --help`` runs in a fresh process (best of ``--repeat``) and must not import
torch; weight loading is timed in a fresh process per model, after torch is imported, from
the local safetensors of ``--weights`` (default: the full-size stand-ins of ``standin.py``)::

    python benchmarks/startup.py
    python benchmarks/startup.py --weights ~/my-oldphoto-weights --models quality scratch
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from standin import DEFAULT_CACHE, standin_weights

_LOAD_ONE = """
import sys, time
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
from oldphoto import Restorer
r = Restorer(sys.argv[1], device=sys.argv[3])
t2 = time.perf_counter()
r.model(sys.argv[2])
t3 = time.perf_counter()
print(f"{t1 - t0:.3f} {t3 - t2:.3f}")
"""


def best_of(command: list[str], repeat: int) -> float:
    """Best wall-clock seconds of running ``command`` (output discarded)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["quality", "scratch", "hr", "detector"])
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    exe = shutil.which("oldphoto", path=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    help_cmd = [exe, "--help"] if exe else [sys.executable, "-m", "oldphoto", "--help"]
    print(f"oldphoto --help: {best_of(help_cmd, args.repeat):.3f} s  (target < 0.5 s)")
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, oldphoto.cli; print('torch' in sys.modules)"],
        check=True, capture_output=True, text=True,
    )
    print(f"torch imported by the CLI at start-up: {probe.stdout.strip()}")

    weights = args.weights or standin_weights(args.models, DEFAULT_CACHE)
    print(f"weights from {weights} on {args.device} (target < 1 s per model, torch already imported)")
    for name in args.models:
        size = (weights / f"{name}.safetensors").stat().st_size / 2**20
        best_load, torch_import = float("inf"), 0.0
        for _ in range(max(1, args.repeat // 2)):
            out = subprocess.run([sys.executable, "-c", _LOAD_ONE, str(weights), name, args.device],
                                 check=True, capture_output=True, text=True)
            torch_import, load = (float(x) for x in out.stdout.split())
            best_load = min(best_load, load)
        print(f"  {name:9} {size:6.0f} MiB  load {best_load:.3f} s  (import torch {torch_import:.2f} s)")


if __name__ == "__main__":
    main()
