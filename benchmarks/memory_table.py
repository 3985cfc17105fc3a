"""``--max-memory`` as a user meets it: time and peak RSS of the ``oldphoto restore`` process.

    python benchmarks/memory_table.py --sizes 6 24 --settings auto 2GB 1GB --models lite --modes quality
    python benchmarks/memory_table.py --sizes 1 --settings auto 512MB --models lite published --modes quality scratch detect

Each cell is one fresh CLI process restoring a generated photo (``standin.sample_photo``,
3:2, the given megapixels); the process's own peak (``VmHWM`` from ``/proc/self/status``,
read at exit), its wall time and what it wrote (``wchar``: the output file plus any maps
spilled to temporary files). ``base`` is the same command on a 64×64 photo: Python, torch
and the loaded model. A budget holds when peak − base ≤ the budget. ``published`` uses the
published-width stand-ins (``standin.py``: random weights, real shapes and costs).
Modes: ``quality``, ``scratch`` (a drawn mask) and ``detect`` (``--detect-scratches``).
The machine is shared, so compare rows of one run, not runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: Runs the CLI in this process and prints its peak RSS and bytes written at exit.
_PEAK = """
import atexit, json, sys
def _report():
    status = dict(line.split(":", 1) for line in open("/proc/self/status"))
    io = dict(line.split(":", 1) for line in open("/proc/self/io"))
    sys.stderr.write("PEAK " + json.dumps({"hwm": int(status["VmHWM"].split()[0]) * 1024, "wchar": int(io["wchar"])}) + "\\n")
atexit.register(_report)
sys.argv = ["oldphoto"] + sys.argv[1:]
from oldphoto.cli import main
main()
"""


def run_cli(args: list[str], env: dict[str, str] | None = None) -> dict:
    """Run ``oldphoto ARGS`` in a fresh process; its seconds, peak RSS, bytes written and exit status."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _PEAK, *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, check=False)
    seconds = time.perf_counter() - start
    lines = [line for line in done.stderr.splitlines() if line.startswith("PEAK ")]
    peak = json.loads(lines[-1][5:]) if lines else {"hwm": 0, "wchar": 0}
    errors = [line for line in done.stderr.splitlines() if line.startswith("error")]
    return {"seconds": seconds, **peak, "rc": done.returncode, "error": errors[-1] if errors else ""}


def photo_files(mp: float, folder: Path) -> tuple[Path, Path]:
    """A generated 3:2 photo of ``mp`` megapixels and a scratch mask for it (made once)."""
    from benchmarks.standin import sample_photo, scratch_mask

    width = int(round((mp * 1e6 * 1.5) ** 0.5 / 4)) * 4
    height = int(round(width / 1.5 / 4)) * 4
    photo, mask = folder / f"{width}x{height}.png", folder / f"{width}x{height}-mask.png"
    if not photo.exists():
        sample_photo(width, height).save(photo)
        scratch_mask(width, height).save(mask)
    return photo, mask


def command(photo: Path, mask: Path, out: Path, model: str, mode: str, setting: str, weights: Path | None) -> list[str]:
    args = ["restore", str(photo), str(out), "--overwrite", "--no-faces", "--max-memory", setting]
    args += ["--model", "lite"] if model == "lite" else ["--weights", str(weights)]
    if mode == "scratch":
        args += ["--mask", str(mask), "--mode", "scratch"]
    elif mode == "detect":
        args += ["--detect-scratches", "--mode", "scratch"]
    else:
        args += ["--mode", "quality"]
    return args


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=float, default=[6, 24], help="megapixels")
    parser.add_argument("--settings", nargs="+", default=["auto", "2GB", "1GB"], help="--max-memory values")
    parser.add_argument("--models", nargs="+", default=["lite"], choices=["lite", "published"])
    parser.add_argument("--modes", nargs="+", default=["quality"], choices=["quality", "scratch", "detect"])
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "oldphoto-memory-table")
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    weights = None
    if "published" in args.models:
        from benchmarks.standin import standin_weights

        weights = standin_weights(["quality", "scratch", "detector"])
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    gb = float(1 << 30)
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print("| photo | model | mode | setting | time | peak RSS | over base | budget | written |")
    print("|---|---|---|---|---|---|---|---|---|")
    for model in args.models:
        for mode in args.modes:
            tiny, tiny_mask = photo_files(0.004096, args.folder)
            base = run_cli(command(tiny, tiny_mask, args.folder / "base.png", model, mode, "auto", weights), env)
            for mp in args.sizes:
                photo, mask = photo_files(mp, args.folder)
                out = args.folder / "out.png"
                for setting in args.settings:
                    r = run_cli(command(photo, mask, out, model, mode, setting, weights), env)
                    if r["rc"] != 0:
                        print(f"| {mp:g} MP | {model} | {mode} | {setting} | failed: {r['error']} |||||", flush=True)
                        continue
                    over = r["hwm"] - base["hwm"]
                    held = "-"
                    if setting != "auto":
                        from oldphoto.tiling import parse_memory

                        held = "holds" if over <= parse_memory(setting) else "EXCEEDED"
                    written = (r["wchar"] - out.stat().st_size) / gb
                    print(f"| {mp:g} MP | {model} | {mode} | {setting} | {r['seconds']:.0f} s | {r['hwm'] / gb:.2f} GB | "
                          f"{over / gb:.2f} GB | {held} | {max(0.0, written):.1f} GB |", flush=True)
            print(f"(base: {base['hwm'] / gb:.2f} GB for {model} {mode} on a 64×64 photo)", flush=True)


if __name__ == "__main__":
    main()
