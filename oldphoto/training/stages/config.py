"""What one training run is: its stage, data, widths, losses and schedule (:class:`TrainConfig`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from oldphoto.errors import UsageError
from oldphoto.pipeline import HOLE_FILLS

STAGES = ("vae-a", "vae-b", "mapping", "mapping-scratch", "detector")

#: Published loss weights per stage (``l1``: see the package docstring of :mod:`oldphoto.training.stages`).
DEFAULT_WEIGHTS: dict[str, dict[str, float]] = {
    "vae-a": {"kl": 1.0, "l1": 10.0, "gan": 1.0, "fm": 10.0, "vgg": 10.0, "latent_gan": 1.0},
    "vae-b": {"kl": 1.0, "l1": 10.0, "gan": 1.0, "fm": 10.0, "vgg": 10.0},
    "mapping": {"latent_l1": 60.0, "gan": 1.0, "fm": 10.0, "vgg": 10.0, "image_l1": 0.0},
    # hole_l1 (not published, off by default): image L1 over the damaged pixels alone, so a
    # short run learns to fill them although they are a few percent of each crop.
    "mapping-scratch": {"latent_l1": 60.0, "gan": 1.0, "fm": 10.0, "vgg": 10.0, "image_l1": 0.0, "hole_l1": 0.0},
    # The detector's training is unpublished: plain per-pixel BCE on the logits (the published
    # option defaults hint at a positive weight of 1), optionally soft Dice for thin masks.
    "detector": {"bce": 1.0, "dice": 0.0},
}


@dataclass
class TrainConfig:
    """Everything one training run needs; saved in its state and in the card of its output."""

    stage: str
    out: Path
    clean: list[Path] = field(default_factory=list)
    old: list[Path] = field(default_factory=list)
    val: Path | None = None
    vae_a: Path | None = None
    vae_b: Path | None = None
    init_from: Path | None = None
    vgg_weights: Path | None = None
    steps: int = 1000
    batch: int = 8
    crop: int = 128
    ngf: int = 64  # VAE width (published 64)
    vae_blocks: int = 4
    vae_downsample: int = 2  # stride-2 stages in each VAE half (published 2; lite 0, see weights/README.md)
    #: Normalisation in the VAEs and the mapping: ``instance`` as published, or ``none`` (lite).
    norm: str = "instance"
    #: The VAEs' first/last layer: ``conv7`` as published, or ``s2`` (lite: a learnt
    #: pixel-unshuffle/shuffle, so everything between runs at half resolution).
    stem: str = "conv7"
    width: int = 512  # mapping width (published 512)
    base: int = 64
    blocks: int = 6
    nl_blocks: int = 3  # scratch mapping: residual blocks in the non-local block (published 3)
    wf: int = 6  # detector: log2 of the UNet's first width (published 6)
    ndf: int = 64
    n_layers_d: int = 3
    num_d: int = 2
    lr: float = 2e-4
    ttur: bool | None = None  # None: as published (mapping: TTUR, betas (0, 0.9), lr/2 and 2·lr; scratch: none)
    weights: dict[str, float] = field(default_factory=dict)
    fade: float = 0.0
    #: Probability of each of the four degradation families in a training input (published 0.7;
    #: lower leaves more inputs lightly degraded, so the network learns to leave them alone).
    p_each: float = 0.7
    #: detector: smallest shrink of its training samples (1 = drawn at crop size, exact masks).
    rescale: float = 1.0
    #: mapping-scratch: how damaged input pixels are painted (``white`` as published, or ``smooth``;
    #: recorded in the card's pipeline so ``restore`` paints them the same way).
    hole_fill: str = "white"
    #: detector: probability that a training crop is damaged (the rest teach it what is not damage).
    p_damage: float = 0.8
    seed: int = 0
    val_every: int = 500
    val_count: int = 8
    val_size: int = 256
    save_every: int = 500
    log_every: int = 10
    max_minutes: float | None = None
    #: Linear learning-rate decay to zero over the run's last ``decay`` steps (the published
    #: schedule's ``niter_decay``, in steps); 0 keeps the rate constant.
    decay: int = 0
    device: str = "cpu"
    precision: str = "auto"
    #: Draw the next batch on a background thread during each step; None: on CUDA only.
    prefetch: bool | None = None
    resume: bool = False
    #: Global residual wiring (``lite``): restored = input + decoder(mapping(encoder(input))),
    #: no min–max stretch; mappings only. Recorded in the card's ``pipeline``.
    residual: bool = False
    #: With ``residual``: fine-tune VAE_A's encoder too (the whole chain end to end). A
    #: frozen VAE code keeps too little of the fine detail a correction must cancel.
    train_encoder: bool = False
    #: Quality mapping with a latent skip (``x + mapping(x)``; ``lite``): it starts as the
    #: identity and learns only the correction. Recorded in the mapping's config.
    mapping_skip: bool = False

    def loss_weights(self) -> dict[str, float]:
        """The stage's published weights with the user's overrides (unknown names refused).

        With ``residual`` a mapping's defaults become image L1 10 and latent L1 0: VAE_B's
        code of the clean photo decodes to the photo, not to the correction the residual
        decoder must produce, so the latent target no longer exists.
        """
        w = dict(DEFAULT_WEIGHTS[self.stage])
        if self.residual:
            if self.stage not in ("mapping", "mapping-scratch"):
                raise UsageError(
                    f"--residual is for the mapping stages, not {self.stage}: a residual autoencoder learns the identity "
                    "by outputting zero; train the VAEs plainly and give --residual to the mapping"
                )
            w["latent_l1"], w["image_l1"] = 0.0, 10.0
        for k, v in self.weights.items():
            if k not in w:
                raise UsageError(f"unknown loss {k!r} for stage {self.stage} (choose {', '.join(w)})")
            if v < 0:
                raise UsageError(f"loss weight {k}={v} must not be negative")
            w[k] = float(v)
        if self.train_encoder and not self.residual:
            raise UsageError("--train-encoder needs --residual (the published mapping keeps VAE_A's encoder frozen)")
        if self.mapping_skip and self.stage != "mapping":
            raise UsageError("--mapping-skip is for the quality mapping stage (mapping) only")
        if self.hole_fill not in HOLE_FILLS or (self.hole_fill != "white" and self.stage != "mapping-scratch"):
            raise UsageError(f"--hole-fill {self.hole_fill}: use white or smooth, for the scratch mapping stage (mapping-scratch) only")
        if self.norm not in ("instance", "none"):
            raise UsageError(f"--norm {self.norm}: use instance or none")
        if self.stem not in ("conv7", "s2"):
            raise UsageError(f"--stem {self.stem}: use conv7 or s2")
        if (self.norm != "instance" or self.stem != "conv7") and self.stage == "detector":
            raise UsageError("--norm and --stem shape the VAEs and the quality mapping, not the detector")
        if self.residual and w.get("latent_l1"):
            raise UsageError("--residual has no latent L1 target (use image_l1; latent_l1 must be 0)")
        return w

    def record(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: (str(v) if isinstance(v, Path) else [str(p) for p in v] if k in ("clean", "old") else v) for k, v in d.items()}


