"""Every GPU figure of ``benchmarks/README.md`` in one run that fits a short device lease.

A lent GPU comes for minutes, so this runs the benchmarks one after another, each under a
share of a global ``--budget`` (a step that fails or runs out of time is logged and the next
one starts), and packs every log into ``OUT/results.tgz`` after each step, so what ran comes
back even when the lease ends early. Steps:

* the test suite's CUDA tests (``pytest -m gpu``);
* ``speed.py`` per mode and precision at 1 and 16 MP (published-size stand-ins, then lite);
* ``precision.py``: the CUDA bf16/fp16 error, stand-ins and the trained lite models;
* ``large_scans.py``: peak device memory of a 16-MP quality restore, tiled and untiled;
* ``attention.py``: which fused attention kernel CUDA runs, and its time;
* training at the published widths with the lite recipe (VAE_A, VAE_B, then the residual
  chain, its step count set from a measured throughput), scored on held-out kodak24 photos.

``DATA`` holds ``clean/<set>/``, ``photos/{old,scratched}/`` and ``kodak/`` (held out)::

    python benchmarks/gpu_session.py --data .gpu --make-data ../shared      # once, here
    python benchmarks/gpu_session.py --data .gpu --out "$OUT" --budget 570
    python benchmarks/gpu_session.py --data .gpu --out /tmp/o --device cpu --quick   # rehearsal

Run it with the device's own Python packages: a newer ``typer`` carried as a wheel needs
``pydantic``, which the device image lacks (that cost the first try of 26 Nov 2026 its
training steps). ``DATA`` must fit the device tool's 64 MiB beside the repository: the clean
sets as lossless WebP (cbsd68, live1, set14: 28 MB), eight kodak24 photos and the real photos.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PY = sys.executable

from oldphoto.training.data import list_photos  # noqa: E402  (the photo files of a folder, as training lists them)


class Session:
    """Runs commands under a shared deadline, logging each to its own file."""

    def __init__(self, out: Path, work: Path, budget: float) -> None:
        self.out, self.work, self.start, self.budget = out, work, time.monotonic(), budget
        self.logs = work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.summary: list[str] = []

    def left(self) -> float:
        return self.budget - (time.monotonic() - self.start)

    def run(self, name: str, argv: list[str], limit: float, until: float | None = None) -> bool:
        """Run ``argv`` for at most ``limit`` s (and never past ``until`` s into the session)."""
        elapsed = time.monotonic() - self.start
        cap = min(limit, self.left() - 10, (until - elapsed) if until is not None else limit)
        if cap < 5:
            self.note(f"{name}: skipped, no time left ({elapsed:.0f} s in)")
            return False
        print(f"== {name} (≤{cap:.0f} s, at {elapsed:.0f} s): {' '.join(argv)}", flush=True)
        t0 = time.monotonic()
        with open(self.logs / f"{name}.log", "w") as log:
            try:
                rc = subprocess.run(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, timeout=cap, check=False).returncode
            except subprocess.TimeoutExpired:
                rc = "timeout"
        took = time.monotonic() - t0
        text = (self.logs / f"{name}.log").read_text(errors="replace")
        print(text[-3000:], flush=True)
        self.note(f"{name}: rc={rc} in {took:.0f} s")
        self.pack()
        return rc == 0

    def note(self, line: str) -> None:
        print(f"-- {line}", flush=True)
        self.summary.append(line)
        (self.logs / "summary.txt").write_text("\n".join(self.summary) + "\n")

    def pack(self) -> None:
        """Logs, training logs and cards into ``results.tgz`` (no weights or optimiser state: too big to fetch)."""
        def small(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
            return None if info.name.endswith(".safetensors") or "/state" in info.name else info

        with tarfile.open(self.out / "results.tgz.part", "w:gz") as tar:
            tar.add(self.work, arcname="gpu", filter=small)
        (self.out / "results.tgz.part").replace(self.out / "results.tgz")


def benchmarks(s: Session, args: argparse.Namespace, until: float) -> None:
    dev, lite = args.device, str(ROOT / "oldphoto" / "weights" / "lite")
    one, big = ("256x256", "384x384") if args.quick else ("1024x1024", "4096x4096")
    speed = [PY, "benchmarks/speed.py", "--device", dev, "--threads", str(args.threads)]
    all3 = ["fp32", "bf16", "fp16"] if dev.startswith("cuda") else ["fp32", "bf16"]  # no fp16 on the CPU
    half = all3[1:]
    s.run("speed_quality", speed + ["--modes", "quality", "detect", "--sizes", one, big, "--precisions", *all3], 110, until)
    s.run("speed_scratch_1mp", speed + ["--modes", "scratch", "--sizes", one, "--precisions", *all3], 60, until)
    # 16 MP scratch: about 26 s per bf16 restore (N² attention over 10⁶ latent positions)
    s.run("speed_scratch_16mp", speed + ["--modes", "scratch", "--sizes", big, "--precisions", half[0], "--repeat", "1"], 80, until)
    s.run("speed_lite", speed + ["--weights", lite, "--modes", "quality", "detect", "--sizes", one, big, "--precisions", *all3], 40, until)
    s.run("speed_lite_scratch", speed + ["--weights", lite, "--modes", "scratch", "--sizes", one, "--precisions", *all3], 40, until)
    photos = str(args.data / "photos")
    prec = [PY, "benchmarks/precision.py", "--device", dev, "--photos", photos, "--threads", str(args.threads)]
    for p in half:
        s.run(f"precision_lite_{p}", prec + ["--weights", lite, "--precision", p, "--mask", "detected"], 35, until)
    for p in half[::-1]:
        s.run(f"precision_standin_{p}", prec + ["--precision", p], 35, until)
    sizes = ["0.25"] if args.quick else ["16"]
    s.run("large_scans", [PY, "benchmarks/large_scans.py", "--device", dev, "--weights", "full", "--modes", "quality",
                          "--sizes", *sizes, "--tile", "512" if args.quick else "1024", "--threads", str(args.threads)], 80, until)
    sides = ["32", "48"] if args.quick else ["64", "128", "192", "256"]
    s.run("attention", [PY, "benchmarks/attention.py", "--device", dev, "--sides", *sides, "--max-gib", "16"], 30, until)
    s.run("speed_hr", speed + ["--modes", "hr", "--sizes", one, big, "--precisions", "fp32", "bf16", "--repeat", "1"], 60, until)


def steps_per_second(log: Path, first: int) -> float:
    """Training steps per second between logged step ``first`` and the last logged step."""
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    steps = [r for r in rows if r.get("event") == "step"]
    a = next(r for r in steps if r["step"] >= first)
    b = steps[-1]
    return (b["step"] - a["step"]) / max(b["seconds"] - a["seconds"], 1e-6)


def training(s: Session, args: argparse.Namespace) -> None:
    runs = args.work / "runs"
    clean = [a for d in sorted((args.data / "clean").iterdir()) for a in ("--clean", str(d))]
    val = ["--val", str(args.data / "kodak"), "--val-count", "8", "--val-size", "256"]
    width = ["--ngf", "16", "--vae-blocks", "1", "--width", "32", "--base", "16", "--blocks", "1"] if args.quick else \
            ["--ngf", "64", "--vae-blocks", "4", "--vae-downsample", "2", "--width", "512", "--base", "64", "--blocks", "6"]
    common = [*clean, *width, "--batch", str(args.batch), "--crop", str(args.crop), "--seed", "0", "--no-progress",
              "--device", args.device, "--threads", str(args.threads), "--loss", "gan=0", "--loss", "fm=0", "--save-every", "0"]
    train = [PY, "-m", "oldphoto", "train"]
    timed = [*common, "--steps", "100000", "--max-minutes", f"{args.vae_seconds / 60:.3f}", "--val-every", "0"]
    s.run("train_vae_a", train + ["vae-a", "--out", str(runs / "vae_a"), "--old", str(args.data / "photos" / "old"), "--ndf", "32", *timed],
          args.vae_seconds + 40)
    s.run("train_vae_b", train + ["vae-b", "--out", str(runs / "vae_b"), *timed], args.vae_seconds + 40)
    chain = ["mapping", "--vae-a", str(runs / "vae_a"), "--vae-b", str(runs / "vae_b"), "--residual", "--train-encoder",
             "--mapping-skip", "--no-ttur", "--lr", "4e-4", *common]
    probe = args.work / "probe"
    for name, sub, extra in (("train_probe_fp32", "fp32", ["--precision", "fp32"]), ("train_probe", "amp", [])):
        s.run(name, train + chain + ["--out", str(probe / sub), "--steps", "25", "--log-every", "5", "--val-every", "0", *extra], 45)
    rate = steps_per_second(probe / "amp" / "log.jsonl", 10) if (probe / "amp" / "log.jsonl").exists() else 2.0
    seconds = s.left() - args.eval_seconds - 40
    if seconds < 20:
        s.note(f"chain: skipped, {seconds:.0f} s left for it")
        return
    steps = max(20, int(rate * seconds * 0.85))
    s.note(f"chain: {rate:.2f} steps/s measured, {steps} steps planned for {seconds:.0f} s")
    s.run("train_chain", train + chain + ["--out", str(runs / "chain"), *val, "--steps", str(steps), "--decay", str(steps // 2),
                                          "--val-every", str(max(1, steps // 4)), "--max-minutes", f"{seconds / 60:.3f}"],
          seconds + 30)
    if not (runs / "chain" / "quality.safetensors").exists():
        s.note("chain: no checkpoint, nothing to score")
        return
    s.run("quality_chain", [PY, "benchmarks/quality.py", "--device", args.device, "--no-baselines", "--folder",
                            str(args.data / "kodak"), "--weights", str(runs / "chain"), "--json",
                            str(s.logs / "quality_chain.json")], args.eval_seconds)
    photo = list_photos(args.data / "photos" / "old")[0]
    s.run("restore_sample", [PY, "-m", "oldphoto", "restore", str(photo), str(s.logs / f"published_width_{photo.stem}.png"),
                             "--weights", str(runs / "chain"), "--device", args.device, "--mode", "quality"], 30)


def make_data(folder: Path, shared: Path) -> None:
    """Write ``folder`` (the ``--data`` layout) from ``shared``: every photo as lossless WebP (same pixels, a third smaller)."""
    from PIL import Image

    clean = shared / "datasets" / "clean"
    jobs = [(clean / name, folder / "clean" / name, None) for name in ("cbsd68", "live1", "set14")]
    jobs += [(shared / "photos" / sub, folder / "photos" / sub, None) for sub in ("old", "scratched")]
    jobs.append((clean / "kodak24", folder / "kodak", 8))
    for src, dst, limit in jobs:
        dst.mkdir(parents=True, exist_ok=True)
        files = list_photos(src)[:limit]
        for path in files:
            with Image.open(path) as im:
                im.save(dst / f"{path.stem}.webp", lossless=True, quality=80, method=4)
        print(f"{dst}: {len(files)} photos")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--make-data", type=Path, metavar="SHARED", help="write --data from this shared folder (../shared) and exit")
    ap.add_argument("--out", type=Path, help="where results.tgz is written (required unless --make-data)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/oldphoto-gpu"), help="run folders and logs")
    ap.add_argument("--budget", type=float, default=570, help="seconds for the whole session")
    ap.add_argument("--bench-share", type=float, default=0.42, help="share of the budget for the benchmarks")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--vae-seconds", type=float, default=25)
    ap.add_argument("--eval-seconds", type=float, default=60)
    ap.add_argument("--quick", action="store_true", help="tiny sizes and widths: rehearse every step on any machine")
    ap.add_argument("--skip", nargs="*", default=[], choices=["tests", "benchmarks", "training"])
    args = ap.parse_args()
    if args.make_data:
        make_data(args.data, args.make_data)
        return
    if args.out is None:
        ap.error("--out is required")
    args.data, args.out, args.work = args.data.resolve(), args.out.resolve(), args.work.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    s = Session(args.out, args.work, args.budget)
    info = "import torch; print(torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name())"
    s.run("info", [PY, "-c", info], 30)
    if shutil.which("nvidia-smi"):
        s.run("nvidia_smi", ["nvidia-smi"], 15)
    if "tests" not in args.skip:
        s.run("pytest_gpu", [PY, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", "tests/test_tiling.py"], 90)
    if "benchmarks" not in args.skip:
        benchmarks(s, args, until=args.budget * args.bench_share)
    if "training" not in args.skip:
        training(s, args)
    s.note(f"session done in {time.monotonic() - s.start:.0f} s")
    s.pack()


if __name__ == "__main__":
    main()
