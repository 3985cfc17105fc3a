"""``oldphoto train STAGE --clean DIR --out DIR``: train the restoration networks.

Stages, in the published order: ``vae-a`` (real old photos from ``--old`` and synthetic ones
made from ``--clean``), ``vae-b`` (clean photos), then ``mapping`` (or ``mapping-scratch``)
between the two frozen VAEs (``--vae-a`` and ``--vae-b`` are the first two runs' ``--out``
folders); ``detector`` is independent. The output folders are ``--weights`` folders for
``oldphoto restore`` (``quality``, ``scratch`` and ``detector`` checkpoints).
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Optional

import typer

from oldphoto.cli.common import fail, say


def _parse_losses(items: Optional[list[str]]) -> dict[str, float]:
    from oldphoto.errors import UsageError

    weights: dict[str, float] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError
            weights[name.strip()] = float(value)
        except ValueError:
            raise UsageError(f"--loss takes NAME=WEIGHT (e.g. gan=0 to switch the GAN off), got {item!r}") from None
    return weights


def train(
    stage: str = typer.Argument(..., metavar="STAGE", help="vae-a, vae-b, mapping, mapping-scratch or detector.", show_default=False),
    out: Path = typer.Option(..., "--out", help="Run folder: training state, log.jsonl and the stage's checkpoint.", show_default=False),
    clean: Optional[list[Path]] = typer.Option(None, "--clean", "--data", metavar="<folder>", help="Folder of clean photos (repeatable)."),
    old: Optional[list[Path]] = typer.Option(None, "--old", metavar="<folder>", help="Folder of real old photos for vae-a (repeatable)."),
    val: Optional[Path] = typer.Option(None, "--val", help="Held-out clean photos for validation PSNR/SSIM."),
    vae_a: Optional[Path] = typer.Option(None, "--vae-a", help="mapping: folder with the VAE_A checkpoint (vae_a, or an imported quality)."),
    vae_b: Optional[Path] = typer.Option(None, "--vae-b", help="mapping: folder with the VAE_B checkpoint (vae_b)."),
    init_from: Optional[Path] = typer.Option(None, "--init-from", help="Start from the networks of a checkpoint folder (ours, or imported published weights) to fine-tune."),
    vgg_weights: Optional[Path] = typer.Option(None, "--vgg-weights", help="ImageNet VGG-19 weights (torchvision layout, .safetensors or .pth) for the perceptual loss; without them it is skipped."),
    steps: int = typer.Option(1000, "--steps", min=1, help="Total steps of the run (a resumed run counts from where it stopped)."),
    batch: int = typer.Option(8, "--batch", min=1, help="Batch size."),
    crop: int = typer.Option(128, "--crop", min=16, help="Training crop side (multiple of 4; published 256)."),
    ngf: int = typer.Option(64, "--ngf", min=1, help="VAE width and latent channels (published 64)."),
    vae_blocks: int = typer.Option(4, "--vae-blocks", min=0, help="Residual blocks in each VAE half (published 4)."),
    vae_downsample: int = typer.Option(2, "--vae-downsample", min=0, max=4, help="Stride-2 stages in each VAE half (published 2; the lite model uses 0, full resolution)."),
    width: int = typer.Option(512, "--width", min=1, help="Mapping width (published 512)."),
    base: int = typer.Option(64, "--base", min=1, help="Mapping head/tail base width (published 64)."),
    blocks: int = typer.Option(6, "--blocks", min=0, help="Mapping residual blocks (published 6)."),
    nl_blocks: int = typer.Option(3, "--nl-blocks", min=0, help="mapping-scratch: residual blocks in the non-local block (published 3)."),
    wf: int = typer.Option(6, "--wf", min=1, help="detector: UNet first width is 2^wf (published 6)."),
    ndf: int = typer.Option(64, "--ndf", min=1, help="Discriminator width (published 64)."),
    num_d: int = typer.Option(2, "--num-d", min=1, help="Discriminator scales (published 2)."),
    lr: float = typer.Option(2e-4, "--lr", help="Learning rate (published 2e-4; the mapping uses lr/2 and 2·lr with TTUR)."),
    ttur: Optional[bool] = typer.Option(None, "--ttur/--no-ttur", help="TTUR (betas 0, 0.9; lr/2 and 2·lr). Default as published: on for mapping, off for mapping-scratch."),
    loss: Optional[list[str]] = typer.Option(None, "--loss", metavar="<name=w>", help="Loss weight NAME=W (repeatable; 0 switches it off). Names: kl l1 gan fm vgg latent_gan (VAEs); latent_l1 gan fm vgg image_l1 (mappings); bce dice (detector)."),
    residual: bool = typer.Option(False, "--residual", help="mapping stages: global residual wiring (restored = input + decoder(mapping(encoder(input))), no min-max stretch); trains the decoder with the mapping, image L1 instead of latent L1. Recorded in the card."),
    train_encoder: bool = typer.Option(False, "--train-encoder", help="with --residual: fine-tune VAE_A's encoder too, the whole chain end to end (lite)."),
    mapping_skip: bool = typer.Option(False, "--mapping-skip", help="mapping: a latent skip around the mapping (x + mapping(x), starting as the identity; lite). Recorded in the card."),
    p_each: float = typer.Option(0.7, "--p-each", min=0.0, max=1.0, help="Probability of each degradation family (blur, noise, resample, JPEG) in a training input (published 0.7)."),
    rescale: float = typer.Option(1.0, "--rescale", min=0.1, max=1.0, help="detector: draw damage on crops up to 1/S larger and shrink them as detection does (1 = off, exact masks)."),
    hole_fill: str = typer.Option("white", "--hole-fill", help="mapping-scratch: paint damaged input pixels 'white' (published) or fill them 'smooth'ly from their surroundings; recorded in the card."),
    p_damage: float = typer.Option(0.8, "--p-damage", min=0.0, max=1.0, help="detector: probability that a training crop is damaged; the rest teach it what is not damage."),
    fade: float = typer.Option(0.0, "--fade", min=0.0, max=1.0, help="Probability of synthetic fading (not in the published recipe)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Random seed (data, initialisation)."),
    val_every: int = typer.Option(500, "--val-every", min=0, help="Validate every N steps (0: never)."),
    val_count: int = typer.Option(8, "--val-count", min=1, help="Validation photos used."),
    val_size: int = typer.Option(256, "--val-size", min=16, help="Validation centre-crop side."),
    save_every: int = typer.Option(500, "--save-every", min=0, help="Checkpoint every N steps (and always at the end)."),
    log_every: int = typer.Option(10, "--log-every", min=1, help="Write a log.jsonl record every N steps."),
    decay: int = typer.Option(0, "--decay", min=0, help="Decay the learning rate linearly to zero over the last N steps (published: half the run); 0: constant."),
    max_minutes: Optional[float] = typer.Option(None, "--max-minutes", min=0.0, help="Stop cleanly with a checkpoint after this long."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run saved in --out."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or cuda:N."),
    precision: str = typer.Option("auto", "--precision", help="auto (fp32 on CPU, fp16 AMP on CUDA), fp32, bf16 or fp16."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads for torch."),
    prefetch: Optional[bool] = typer.Option(None, "--prefetch/--no-prefetch", help="Draw the next batch on a background thread while a step runs. Default: on CUDA, where the GPU would wait for the CPU's sampler."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar with ETA and losses."),
) -> None:
    """Train one stage of the restoration networks (the published triplet domain translation)."""
    from oldphoto.errors import OldPhotoError, UsageError

    try:
        import torch

        from oldphoto.training.loop import run
        from oldphoto.training.stages import TrainConfig

        if threads:
            torch.set_num_threads(threads)
        cfg = TrainConfig(
            stage=stage, out=out, clean=list(clean or []), old=list(old or []), val=val, vae_a=vae_a, vae_b=vae_b,
            init_from=init_from, vgg_weights=vgg_weights, steps=steps, batch=batch, crop=crop, ngf=ngf,
            vae_blocks=vae_blocks, vae_downsample=vae_downsample, width=width, base=base, blocks=blocks, nl_blocks=nl_blocks, wf=wf, ndf=ndf, num_d=num_d, lr=lr, ttur=ttur,
            weights=_parse_losses(loss), fade=fade, seed=seed, val_every=val_every, val_count=val_count,
            val_size=val_size, save_every=save_every, log_every=log_every, max_minutes=max_minutes, decay=decay,
            device=device, precision=precision, resume=resume, residual=residual, train_encoder=train_encoder,
            mapping_skip=mapping_skip, p_each=p_each, rescale=rescale, p_damage=p_damage, hole_fill=hole_fill,
            prefetch=prefetch,
        )
        cfg.loss_weights()  # unknown loss names fail before any data is read
        from oldphoto.devices import select_device, slow_precision_reason

        slow = slow_precision_reason(precision, select_device(device))
        if slow:
            say("yellow", "warning", slow)
        command = "oldphoto train " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if len(sys.argv) > 2 else None
        result = run(cfg, progress=progress, say=lambda m: say("yellow", "note", m), command=command)
    except UsageError as exc:
        fail(str(exc), 2)
    except OldPhotoError as exc:
        fail(str(exc))
    scores = f"; validation {result.val}" if result.val else ""
    state = "stopped early" if result.stopped_early else "done"
    say("green", state, f"step {result.step} in {result.seconds / 60:.1f} min; checkpoint {result.output}{scores}")
