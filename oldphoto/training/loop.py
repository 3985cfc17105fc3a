"""The training loop: data, steps, JSONL log, validation, checkpoints, resume, time limit.

Everything one run produces sits in its ``--out`` folder:

* ``state/`` — the latest training state (networks, discriminators, optimisers, step, RNG
  streams); ``--resume`` continues from it and reproduces the uninterrupted run's losses;
* ``NAME.safetensors`` + ``NAME.json`` — the stage's output in our checkpoint format with a
  card (``vae_a``, ``vae_b``; ``quality``, ``scratch`` and ``detector``, which
  ``restore --weights`` reads directly);
* ``log.jsonl`` — one record per logged step, validation and checkpoint.
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from oldphoto.devices import select_device
from oldphoto.errors import UsageError
from oldphoto.training.data import Sampler, load_photos
from oldphoto.training.degrade import PUBLISHED
from oldphoto.training.prefetch import BatchPrefetcher, Batches
from oldphoto.training.stages import Stage, TrainConfig, make_stage
from oldphoto.training.state import has_state, load_state, restore_rng, rng_state, save_state


@dataclass
class RunResult:
    """What a run did: its final step, the per-step losses of this session, its last scores."""

    step: int
    losses: list[dict[str, float]] = field(default_factory=list)
    val: dict[str, float] | None = None
    stopped_early: bool = False
    seconds: float = 0.0
    output: Path | None = None
    notes: list[str] = field(default_factory=list)


class _Log:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.f = open(path, "a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self.f.write(json.dumps(record) + "\n")
        self.f.flush()

    def close(self) -> None:
        self.f.close()


@dataclass(frozen=True)
class StepReport:
    """What a run reports to its ``progress`` callback: once at the start (no losses yet), then after each step."""

    step: int
    total: int
    losses: dict[str, float]
    val: dict[str, float] | None = None


def run(
    cfg: TrainConfig,
    *,
    progress: Callable[[StepReport], None] | None = None,
    say: Callable[[str], None] | None = None,
    command: str | None = None,
    stop_after: int | None = None,
) -> RunResult:
    """Train ``cfg.stage``; return what happened.

    ``progress`` is called with a :class:`StepReport` at the start and after every step (None or
    False: nothing is reported; the command line draws its bar from these). ``stop_after`` ends
    this session after that many steps, as an interruption would (the state is saved), for tests
    of resuming."""
    say = say or (lambda m: print(m, file=sys.stderr))
    out = Path(cfg.out)
    device = select_device(cfg.device)
    if cfg.crop % 4 or cfg.crop < 16:
        raise UsageError(f"--crop must be a multiple of 4 and at least 16, got {cfg.crop}")
    if cfg.batch < 1 or cfg.steps < 1:
        raise UsageError("--batch and --steps must be at least 1")
    if not cfg.clean:
        raise UsageError("no clean photos given (--clean DIR)")
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np_rng = np.random.default_rng(cfg.seed)

    clean, clean_names = load_photos(cfg.clean)
    old, old_names = load_photos(cfg.old) if cfg.old and cfg.stage == "vae-a" else ([], [])
    val = load_photos([cfg.val])[0] if cfg.val is not None else []
    stage = make_stage(cfg, device)
    _lay_out(stage, device)
    recipe = replace(PUBLISHED, p_fade=cfg.fade, p_each=cfg.p_each, p_clean=cfg.p_clean, p_noise=cfg.p_noise)
    sampler = Sampler(clean, old, crop=cfg.crop, recipe=recipe, damage=stage.damage, rng=np_rng, zoom=cfg.zoom, clean_zoom=cfg.clean_zoom)

    state_dir = out / "state"
    step, elapsed_before, last_val = 0, 0.0, None
    notes = list(stage.notes)
    if cfg.resume and has_state(state_dir):
        saved = load_state(state_dir)
        if saved["stage"] != cfg.stage:
            raise UsageError(f"{state_dir}: holds a {saved['stage']} run, not {cfg.stage}")
        stage.load_state(saved["stage_state"])
        restore_rng(saved["rng"], np_rng)
        step, elapsed_before = int(saved["step"]), float(saved["seconds"])
        last_val = saved.get("val")  # the checkpoint card of a resumed run keeps its last validation
        notes.append(f"resumed at step {step}")
    elif has_state(state_dir):
        raise UsageError(f"{out}: already holds a training run; pass --resume to continue it or choose another --out")
    else:
        if cfg.resume:
            notes.append(f"nothing to resume in {state_dir}; starting afresh")
        if cfg.init_from is not None:
            got = stage.init_from(cfg.init_from)  # type: ignore[attr-defined]
            if not got:
                raise UsageError(f"{cfg.init_from}: no checkpoint with networks for stage {cfg.stage}")
            notes.append(f"initialised from {cfg.init_from}: {', '.join(got)}")
    for n in notes:
        say(n)

    log = _Log(out / "log.jsonl")
    log.write({"event": "start", "step": step, "time": time.time(), "config": cfg.record(), "loss_weights": stage.w,
               "data": {"clean": len(clean), "old": len(old), "val": len(val)}, "notes": notes, "command": command})
    result = RunResult(step=step, notes=notes, val=last_val)
    start = time.monotonic()
    data_info = {"clean": [str(p) for p in cfg.clean], "clean_images": len(clean_names),
                 "old": [str(p) for p in cfg.old] if old else [], "old_images": len(old_names),
                 "val": str(cfg.val) if cfg.val else None}

    # Drawing batches ahead pays where the step leaves the CPU idle (CUDA); on the CPU the
    # sampler would only compete with the step for the same cores.
    prefetch = cfg.prefetch if cfg.prefetch is not None else device.type == "cuda"
    feeder = (BatchPrefetcher if prefetch else Batches)(lambda: stage.batch(sampler), np_rng)

    def checkpoint(final: bool) -> None:
        seconds = elapsed_before + time.monotonic() - start
        rng = {**rng_state(np_rng), "numpy": feeder.numpy_state()}  # not the state after a batch drawn ahead
        save_state(state_dir, {"stage": cfg.stage, "step": step, "seconds": seconds,
                               "stage_state": stage.state(), "rng": rng, "val": result.val})
        result.output = _export(stage, out, cfg, step, seconds, result.val, data_info, command)
        log.write({"event": "checkpoint", "step": step, "seconds": seconds, "final": final})

    report = progress or (lambda r: None)
    report(StepReport(step, cfg.steps, {}))
    session_end = cfg.steps if stop_after is None else min(cfg.steps, step + stop_after)
    try:
        while step < session_end:
            if cfg.decay:
                _decay_lr(stage, cfg, step)
            losses = stage.step(feeder.next())
            step += 1
            result.losses.append(losses)
            if step % cfg.log_every == 0 or step == cfg.steps:
                log.write({"event": "step", "step": step, "seconds": elapsed_before + time.monotonic() - start, "losses": losses})
            if val and cfg.val_every and (step % cfg.val_every == 0 or step == cfg.steps):
                result.val = stage.validate(val)
                log.write({"event": "val", "step": step, **result.val})
            report(StepReport(step, cfg.steps, losses, result.val))
            timed_out = cfg.max_minutes is not None and time.monotonic() - start >= cfg.max_minutes * 60
            if timed_out and step < cfg.steps:
                result.stopped_early = True
                say(f"stopping at step {step}: --max-minutes {cfg.max_minutes:g} reached (resume with --resume)")
                break
            if cfg.save_every and step % cfg.save_every == 0 and step < session_end:
                checkpoint(False)
        if step < cfg.steps:
            result.stopped_early = True
        checkpoint(step >= cfg.steps)
    finally:
        feeder.close()
        log.close()
    result.step = step
    result.seconds = elapsed_before + time.monotonic() - start
    return result


def _lay_out(stage: Stage, device: torch.device) -> None:
    """bf16 on the CPU computes channels-last, as the restore path does (oneDNN's bf16 kernels
    want it; on the Zen 4 measured 0.9-1.6× bf16 NCHW's speed per step, mostly faster, see
    ``benchmarks/train_precision.py``). A layout, not a change of what is computed: a state
    saved from either layout loads into the other."""
    if device.type == "cpu" and stage.precision == "bf16":
        for net in stage.nets.values():
            net.to(memory_format=torch.channels_last)


def _decay_lr(stage: Stage, cfg: TrainConfig, step: int) -> None:
    """Set every optimiser's rate for ``step``: its initial rate, falling linearly to zero over the last ``cfg.decay`` steps.

    The initial rate (``initial_lr``) is the run file's, set again on resume (``Stage.load_state``):
    a resumed run continues the same schedule, and a later chunk may restart at a lower rate.
    """
    factor = min(1.0, (cfg.steps - step) / cfg.decay)
    for optim in stage.optims.values():
        for group in optim.param_groups:
            group["lr"] = group.setdefault("initial_lr", group["lr"]) * factor


def _export(stage: Stage, out: Path, cfg: TrainConfig, step: int, seconds: float, val: dict[str, float] | None,
            data: dict[str, Any], command: str | None) -> Path:
    from oldphoto.weights.checkpoint import save_checkpoint

    tensors, meta = stage.export()
    meta["license"] = "MIT"
    meta["origin"] = "trained with oldphoto's implementation of the published training method (Wan et al., CVPR 2020)"
    meta["training"] = {
        "stage": cfg.stage, "step": step, "steps_planned": cfg.steps, "wall_seconds": round(seconds, 1),
        "command": command, "config": cfg.record(), "loss_weights": stage.w, "data": data,
        "validation": val, "notes": stage.notes, "device": cfg.device, "precision_used": stage.precision,
        "torch": torch.__version__,
    }
    return save_checkpoint(out, stage.output_name, tensors, meta)
