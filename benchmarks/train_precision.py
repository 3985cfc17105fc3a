"""Seconds per training step in fp32 against bf16 autocast (NCHW and channels-last), side by side.

Decides what ``oldphoto train --precision auto`` picks on a CPU (``devices.training_precision``):
bf16 only where it was measured faster here. The stages are the bundled lite model's recipe
(``weights/README.md``, GAN and feature matching off as there): the quality chain
(``mapping --residual --train-encoder --mapping-skip``), the scratch chain
(``mapping-scratch``), the detector and VAE_B. Each configuration runs the same batches;
each configuration takes one warm-up step, then the configurations take their steps in turn
(step by step, so a drifting shared machine slows all of them alike), and the median per step
is printed with the load average::

    python benchmarks/train_precision.py                   # 2 threads, all four stages
    python benchmarks/train_precision.py --stages detector --threads 1 --steps 6
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from oldphoto.devices import cpu_has_fast_bf16  # noqa: E402
from oldphoto.training.data import Sampler, load_photos  # noqa: E402
from oldphoto.training.degrade import PUBLISHED  # noqa: E402
from oldphoto.training.loop import run  # noqa: E402
from oldphoto.training.stages import TrainConfig, make_stage  # noqa: E402

CLEAN = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "clean" / "cbsd68"
OFF = {"gan": 0.0, "fm": 0.0}
LITE_VAE = dict(ngf=24, vae_blocks=2, vae_downsample=0, crop=96, batch=8)
SCRATCH_VAE = dict(ngf=32, vae_blocks=2, vae_downsample=2, crop=128, batch=8)
STAGES = {
    "quality chain": ("mapping", dict(residual=True, train_encoder=True, mapping_skip=True, ttur=False, base=24, width=24,
                                      blocks=1, weights=OFF), LITE_VAE),
    "scratch chain": ("mapping-scratch", dict(residual=True, train_encoder=True, ttur=False, base=32, width=64, blocks=1,
                                              nl_blocks=1, weights={**OFF, "hole_l1": 10.0}), SCRATCH_VAE),
    "detector": ("detector", dict(wf=4, rescale=0.4, crop=128, batch=8, weights={"dice": 1.0}), {}),
    "vae-b": ("vae-b", dict(weights=OFF), LITE_VAE),
}


def _vaes(root: Path, clean: list[Path], vae: dict) -> dict[str, Path]:
    """One-step VAE runs at the stage's widths (a mapping stage needs their checkpoints; speed does not need them trained)."""
    out = {}
    for stage in ("vae-a", "vae-b"):
        w = {**OFF, **({"latent_gan": 0.0} if stage == "vae-a" else {})}
        folder = root / f"{stage}-{vae['ngf']}-{vae['vae_downsample']}"
        if not folder.exists():
            run(TrainConfig(stage=stage, out=folder, clean=clean, steps=1, val_every=0, save_every=0, weights=w,
                            precision="fp32", **vae), progress=False, say=lambda m: None)
        out[stage.replace("-", "_")] = folder
    return out


def _stage(cfg: TrainConfig, layout: str):  # noqa: ANN202
    """The stage built on the CPU with its networks in ``layout``."""
    torch.manual_seed(0)
    stage = make_stage(cfg, torch.device("cpu"))
    for net in stage.nets.values():
        net.to(memory_format=torch.channels_last if layout == "channels-last" else torch.contiguous_format)
    return stage


def _step(stage, layout: str, batch) -> float:  # noqa: ANN001
    """Seconds of one training step on ``batch`` laid out as the stage's networks are."""
    fmt = torch.channels_last if layout == "channels-last" else torch.contiguous_format
    batch.x = batch.x.contiguous(memory_format=fmt)
    start = time.perf_counter()
    stage.step(batch)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stages", nargs="+", default=list(STAGES), choices=list(STAGES))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=4, help="timed steps per round (different batches)")
    ap.add_argument("--rounds", type=int, default=2, help="rounds over those batches")
    ap.add_argument("--clean", type=Path, default=CLEAN)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    configs = [("fp32", "NCHW"), ("bf16", "NCHW"), ("bf16", "channels-last")]
    print(f"torch {torch.__version__}, {args.threads} threads, native bf16: {cpu_has_fast_bf16()}, "
          f"CPU {torch.backends.cpu.get_cpu_capability()}")
    print(f"{'stage':<14} " + " ".join(f"{p + ' ' + lay:>20}" for p, lay in configs) + "   bf16 speed-up (best)  load")
    clean = [args.clean]
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.stages:
            stage_name, extra, vae = STAGES[name]
            base = TrainConfig(stage=stage_name, out=Path(tmp) / name, clean=clean, **{**vae, **extra},
                               **(_vaes(Path(tmp), clean, vae) if stage_name.startswith("mapping") else {}))
            probe = make_stage(replace(base, precision="fp32"), torch.device("cpu"))
            photos = load_photos(clean)[0]
            sampler = Sampler(photos, crop=base.crop, recipe=replace(PUBLISHED, p_each=base.p_each), damage=probe.damage,
                              rng=np.random.default_rng(0))
            batches = [probe.batch(sampler) for _ in range(args.steps + 1)]
            stages = {c: _stage(replace(base, precision=c[0]), c[1]) for c in configs}
            times: dict[tuple[str, str], list[float]] = {c: [] for c in configs}
            for c in configs:
                _step(stages[c], c[1], batches[-1])  # warm-up: oneDNN builds its kernels
            for _ in range(args.rounds):
                for b in batches[:-1]:
                    for c in configs:  # step by step in turn, so a drifting shared machine slows all alike
                        times[c].append(_step(stages[c], c[1], b))
            med = {c: statistics.median(t) for c, t in times.items()}
            best_bf16 = min(med[c] for c in configs if c[0] == "bf16")
            print(f"{name:<14} " + " ".join(f"{med[c]:>18.3f} s" for c in configs)
                  + f"   {med['fp32', 'NCHW'] / best_bf16:>10.2f}×          {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
