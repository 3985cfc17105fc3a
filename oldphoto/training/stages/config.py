"""What one training run is: its stage, data, widths, losses and schedule (:class:`TrainConfig`).

:class:`TrainConfig` is the one place a training option is defined: its field (name, type,
default) and its entry in :data:`OPTIONS` (help, extra flag names, limits). ``oldphoto train``
makes one command-line option of each field (``--crop`` for ``crop``), and :func:`config_values`
reads a run file (TOML with the same names, or a card whose ``training.config`` a run recorded)
that those options override. Torch-free, so the command line can read it at start-up.
"""

from __future__ import annotations

import json
import tomllib
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple

from oldphoto.errors import UsageError

STAGES = ("vae-a", "vae-b", "mapping", "mapping-scratch", "detector")

#: Published loss weights per stage (``l1``: see the package docstring of :mod:`oldphoto.training.stages`).
DEFAULT_WEIGHTS: dict[str, dict[str, float]] = {
    "vae-a": {"kl": 1.0, "l1": 10.0, "gan": 1.0, "fm": 10.0, "vgg": 10.0, "latent_gan": 1.0},
    "vae-b": {"kl": 1.0, "l1": 10.0, "gan": 1.0, "fm": 10.0, "vgg": 10.0},
    # image_l2 (not published, off by default): mean squared error on the restored image, the
    # loss PSNR measures. L1's optimum is each pixel's median, which leaves an isolated pixel
    # that may be noise or detail alone: L1-trained lite kept salt-and-pepper specks.
    "mapping": {"latent_l1": 60.0, "gan": 1.0, "fm": 10.0, "vgg": 10.0, "image_l1": 0.0, "image_l2": 0.0},
    # hole_l1 (not published, off by default): image L1 over the damaged pixels alone, so a
    # short run learns to fill them although they are a few percent of each crop.
    "mapping-scratch": {"latent_l1": 60.0, "gan": 1.0, "fm": 10.0, "vgg": 10.0, "image_l1": 0.0, "image_l2": 0.0, "hole_l1": 0.0},
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
    first_width: int | None = None  # detector: channels of the UNet's full-resolution level (None: 2^wf)
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
    #: Share of training inputs kept nearly clean (at most a light JPEG); not published.
    p_clean: float = 0.0
    #: Share of training inputs given Gaussian noise alone (σ 5-50 of 255); not published.
    p_noise: float = 0.0
    #: mapping stages: cut each (degraded, clean) pair from the clean photo enlarged by z, uniform
    #: in [1, zoom] (1 = off), so soft photos such as film scans are among the clean targets.
    zoom: float = 1.0
    #: mapping stages: the same for the pairs kept nearly clean (``p_clean``) alone, so a soft but
    #: clean photo is to be left alone while blurred ones are still sharpened onto crisp targets.
    clean_zoom: float = 1.0
    #: detector: smallest shrink of its training samples (1 = drawn at crop size, exact masks).
    rescale: float = 1.0
    #: mapping-scratch: how damaged input pixels are painted (``white`` as published, or ``smooth``;
    #: recorded in the card's pipeline so ``restore`` paints them the same way).
    hole_fill: str = "white"
    #: detector: probability that a training crop is damaged (the rest teach it what is not damage).
    p_damage: float = 0.8
    #: detector: share of crops damaged before they are degraded (a print cracks, then ages and is
    #: scanned: soft, faded, noisy cracks) instead of after (crisp damage on an aged photo).
    p_rescan: float = 0.0
    #: detector: damage sized for a working size up to this many times detection's 256 px (a card
    #: that also runs the UNet at larger sizes shows it wider); 1 sizes it for 256 alone.
    damage_zoom: float = 1.0
    #: detector: the shortest crack drawn, as a share of the photo's short side (0.25 before 5 Dec
    #: 2026; short, stubby cracks like scratched/a's big one are about 0.1).
    crack_min: float = 0.25
    #: detector: share of crops with white objects that are not damage painted in (collars, bows).
    p_decoy: float = 0.0
    #: detector: share of crops with black garments painted in and left out of the mask.
    p_dark_decoy: float = 0.0
    #: detector: share of thin scratches and dust drawn dark instead of light (0.25 before 5 Dec 2026;
    #: the detector trained on that missed most dark strokes).
    dark_strokes: float = 0.25
    #: detector: share of dust drawn dark, when it should differ from the scratches' (None: ``dark_strokes``).
    dark_dust: float | None = None
    #: detector: chance that a damaged crop has dust among its kinds (0.5, as the benchmark draws it).
    p_dust: float = 0.5
    #: detector: leave out of the training mask damaged pixels whose grey level moved by less than
    #: this (invisible strokes); 0 keeps every changed pixel, as every run before 5 Dec 2026 did.
    mask_min_change: float = 0.0
    #: detector: read the photo in colour (3 inputs) instead of Pillow's grey; a cracked print's
    #: paper is not the colour of the scene under it. Recorded in the UNet's config.
    colour: bool = False
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
        from oldphoto.pipeline import HOLE_FILLS

        if self.hole_fill not in HOLE_FILLS or (self.hole_fill != "white" and self.stage != "mapping-scratch"):
            raise UsageError(f"--hole-fill {self.hole_fill}: use {', '.join(HOLE_FILLS)}, for the scratch mapping stage (mapping-scratch) only")
        if self.norm not in ("instance", "none"):
            raise UsageError(f"--norm {self.norm}: use instance or none")
        if self.stem not in ("conv7", "s2"):
            raise UsageError(f"--stem {self.stem}: use conv7 or s2")
        if self.colour and self.stage != "detector":
            raise UsageError("--colour is for the detector; the VAEs and mappings always read colour")
        if (self.norm != "instance" or self.stem != "conv7") and self.stage == "detector":
            raise UsageError("--norm and --stem shape the VAEs and the quality mapping, not the detector")
        if self.residual and w.get("latent_l1"):
            raise UsageError("--residual has no latent L1 target (use image_l1; latent_l1 must be 0)")
        return w

    def record(self) -> dict[str, Any]:
        """The run as plain JSON values (paths as strings): stored in its log and card, and read back by :func:`config_values`."""
        d = asdict(self)
        return {k: (str(v) if isinstance(v, Path) else [str(p) for p in v] if k in ("clean", "old") else v) for k, v in d.items()}


class Option(NamedTuple):
    """How a :class:`TrainConfig` field appears on the command line (``--FIELD-NAME`` plus ``flags``)."""

    help: str
    flags: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None


#: Every field's command-line help (a field missing here fails the tests).
OPTIONS: dict[str, Option] = {
    "stage": Option("vae-a, vae-b, mapping, mapping-scratch or detector."),
    "out": Option("Run folder: training state, log.jsonl and the stage's checkpoint."),
    "clean": Option("Folder of clean photos (repeatable).", ("--data",)),
    "old": Option("Folder of real old photos for vae-a (repeatable)."),
    "val": Option("Held-out clean photos for validation PSNR/SSIM."),
    "vae_a": Option("mapping: folder with the VAE_A checkpoint (vae_a, or an imported quality)."),
    "vae_b": Option("mapping: folder with the VAE_B checkpoint (vae_b)."),
    "init_from": Option("Start from the networks of a checkpoint folder (ours, or imported published weights) to fine-tune."),
    "vgg_weights": Option("ImageNet VGG-19 weights (torchvision layout, .safetensors or .pth) for the perceptual loss; without them it is skipped."),
    "steps": Option("Total steps of the run (a resumed run counts from where it stopped).", min=1),
    "batch": Option("Batch size.", min=1),
    "crop": Option("Training crop side (multiple of 4; published 256).", min=16),
    "ngf": Option("VAE width and latent channels (published 64).", min=1),
    "vae_blocks": Option("Residual blocks in each VAE half (published 4).", min=0),
    "vae_downsample": Option("Stride-2 stages in each VAE half (published 2; the lite model uses 0, full resolution).", min=0, max=4),
    "norm": Option("Normalisation in the VAEs and the quality mapping: instance (published) or none (lite)."),
    "stem": Option("The VAEs' first and last layer: conv7 (published) or s2 (lite: a learnt pixel-unshuffle, so the rest runs at half resolution)."),
    "width": Option("Mapping width (published 512).", min=1),
    "base": Option("Mapping head/tail base width (published 64).", min=1),
    "blocks": Option("Mapping residual blocks (published 6).", min=0),
    "nl_blocks": Option("mapping-scratch: residual blocks in the non-local block (published 3).", min=0),
    "wf": Option("detector: UNet first width is 2^wf (published 6).", min=1),
    "first_width": Option("detector: channels of the UNet's full-resolution level (default 2^wf). Started from a narrower "
                          "--init-from, the new channels begin so that the network computes exactly what the narrower one did.", min=1),
    "ndf": Option("Discriminator width (published 64).", min=1),
    "n_layers_d": Option("Discriminator layers (published 3).", min=1),
    "num_d": Option("Discriminator scales (published 2).", min=1),
    "lr": Option("Learning rate (published 2e-4; the mapping uses lr/2 and 2·lr with TTUR)."),
    "ttur": Option("TTUR (betas 0, 0.9; lr/2 and 2·lr). Default as published: on for mapping, off for mapping-scratch."),
    "weights": Option("Loss weight NAME=W (repeatable; 0 switches it off). Names: kl l1 gan fm vgg latent_gan (VAEs); "
                      "latent_l1 gan fm vgg image_l1 image_l2 hole_l1 (mappings); bce dice (detector). In a run file: a weights "
                      "table.", ("--loss",)),
    "fade": Option("Probability of synthetic fading (not in the published recipe).", min=0.0, max=1.0),
    "p_each": Option("Probability of each degradation family (blur, noise, resample, JPEG) in a training input (published 0.7).", min=0.0, max=1.0),
    "p_clean": Option("Share of training inputs kept nearly clean (half of them JPEG at quality 85-100, nothing else), so a good photo is left alone (not published).", min=0.0, max=1.0),
    "p_noise": Option("Share of training inputs given Gaussian noise alone (sigma 5-50 of 255), the degradation blind denoisers are "
                      "scored on (not published; 0 draws what earlier runs drew).", min=0.0, max=1.0),
    "zoom": Option("mapping stages: cut training pairs from the clean photo enlarged by a factor uniform from 1 to this (bicubic), "
                   "so soft photos (film scans) are among the clean targets and a soft but clean photo is left alone (1 = off).", min=1.0, max=4.0),
    "clean_zoom": Option("mapping stages: cut the pairs kept nearly clean (--p-clean) from the clean photo enlarged by a factor uniform "
                         "from 1 to this, so soft but clean photos are left alone while blurred ones still learn crisp targets (1 = off).",
                         min=1.0, max=4.0),
    "rescale": Option("detector: draw damage on crops up to 1/S larger and shrink them as detection does (1 = off, exact masks).", min=0.1, max=1.0),
    "hole_fill": Option("mapping-scratch: paint damaged input pixels 'white' (published) or fill them from their surroundings, 'smooth' (pull-push) or 'harmonic'; recorded in the card."),
    "p_damage": Option("detector: probability that a training crop is damaged; the rest teach it what is not damage.", min=0.0, max=1.0),
    "p_rescan": Option("detector: share of training crops damaged before the degradation (and fading) instead of after, so cracks are as soft and faint as on a scanned old print.", min=0.0, max=1.0),
    "damage_zoom": Option("detector: size each crop's damage for a working size of 256·z px, z uniform from 1 to this, as a "
                          "card that also runs the UNet at larger sizes (384, 448) shows it: wider (1 = sized for 256 alone).", min=1.0, max=4.0),
    "crack_min": Option("detector: the shortest crack drawn for training, as a share of the photo's short side (cracks run "
                        "from this to the whole side; 0.25 draws what earlier runs drew).", min=0.02, max=1.0),
    "p_decoy": Option("detector: share of training crops with smooth, shaded white objects painted into the scene and left out "
                      "of the mask (collars, bows, white flowers are not damage; 0 draws what earlier runs drew).", min=0.0, max=1.0),
    "p_dark_decoy": Option("detector: share of training crops with black, knitted garments painted into the scene and left out of "
                           "the mask (a black top is not dark paper in a crack; 0 draws what earlier runs drew).", min=0.0, max=1.0),
    "dark_strokes": Option("detector: share of thin scratches and dust drawn dark (black lines and specks, as a scratched negative "
                           "prints them) instead of light; 0.25 draws what earlier runs drew.", min=0.0, max=1.0),
    "dark_dust": Option("detector: share of dust drawn dark instead of light, when it should differ from --dark-strokes (dark specks "
                        "on a face or a façade are what a detector trained on mostly light dust misses); unset: --dark-strokes.", min=0.0, max=1.0),
    "p_dust": Option("detector: chance that a damaged training crop has dust among its damage kinds; 0.5 draws what earlier runs drew.",
                     min=0.0, max=1.0),
    "mask_min_change": Option("detector: leave out of the training mask damaged pixels whose grey level moved by fewer levels than this "
                              "(a dark scratch over black hair is invisible, so the detector should not be taught to guess it); 0 keeps them all.",
                              min=0.0, max=255.0),
    "colour": Option("detector: read the photo in colour (RGB, 3 inputs) instead of grey. With --init-from a grey detector its first "
                     "layer is spread over red, green and blue by Pillow's luma weights, so training starts from the grey detector's masks."),
    "seed": Option("Random seed (data, initialisation).", min=0),
    "val_every": Option("Validate every N steps (0: never).", min=0),
    "val_count": Option("Validation photos used.", min=1),
    "val_size": Option("Validation centre-crop side.", min=16),
    "save_every": Option("Checkpoint every N steps (and always at the end).", min=0),
    "log_every": Option("Write a log.jsonl record every N steps.", min=1),
    "max_minutes": Option("Stop cleanly with a checkpoint after this long.", min=0.0),
    "decay": Option("Decay the learning rate linearly to zero over the last N steps (published: half the run); 0: constant.", min=0),
    "device": Option("auto, cpu, cuda, cuda:N or mps."),
    "precision": Option("auto (fp16 AMP on CUDA; on a CPU with native bf16, bf16 for the stages measured faster there: "
                        "mapping, detector, vae-b, and mapping-scratch with AMX; else fp32), fp32, bf16 or fp16. "
                        "The card records what ran (precision_used)."),
    "prefetch": Option("Draw the next batch on a background thread while a step runs. Default: on CUDA, where the GPU would wait for the CPU's sampler."),
    "resume": Option("Continue the run saved in --out."),
    "residual": Option("mapping stages: global residual wiring (restored = input + decoder(mapping(encoder(input))), no min-max "
                       "stretch); trains the decoder with the mapping, image L1 instead of latent L1. Recorded in the card."),
    "train_encoder": Option("with --residual: fine-tune VAE_A's encoder too, the whole chain end to end (lite)."),
    "mapping_skip": Option("mapping: a latent skip around the mapping (x + mapping(x), starting as the identity; lite). Recorded in the card."),
}


def field_types() -> dict[str, Any]:
    """Each :class:`TrainConfig` field's type (resolved annotations), in field order."""
    hints = typing.get_type_hints(TrainConfig)
    return {f.name: hints[f.name] for f in fields(TrainConfig)}


def _coerce(name: str, kind: Any, value: Any, source: str) -> Any:
    """``value`` as field ``name`` holds it (paths from strings, ints as floats); a one-line error naming ``source`` if it does not fit."""
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    if value is None:
        if type(None) in typing.get_args(kind):
            return None
        raise UsageError(f"{source}: {name} cannot be empty")
    if args and typing.get_origin(kind) is not list and typing.get_origin(kind) is not dict:
        kind = args[0]  # X | None
    bad = UsageError(f"{source}: {name} = {value!r} is not a {getattr(kind, '__name__', kind)}")
    if kind is Path:
        if not isinstance(value, (str, Path)):
            raise bad
        return Path(value)
    if typing.get_origin(kind) is list:
        items = [value] if isinstance(value, (str, Path)) else value
        if not isinstance(items, list) or not all(isinstance(v, (str, Path)) for v in items):
            raise bad
        return [Path(v) for v in items]
    if typing.get_origin(kind) is dict:
        if not isinstance(value, dict) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value.values()):
            raise bad
        return {str(k): float(v) for k, v in value.items()}
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise bad
    return value


def config_values(path: Path) -> dict[str, Any]:
    """The training options a run file sets, by field name, typed as :class:`TrainConfig` holds them.

    ``path`` is a TOML file (``crop = 96``, ``clean = ["photos/a", "photos/b"]``,
    ``[weights]`` with ``gan = 0``; ``-`` and ``_`` alike in names), or a JSON card or log record
    whose ``training.config`` (or ``config``) is a recorded run: ``oldphoto train --config
    runs/lite/quality.json --out runs/again`` replays it. Unknown names are refused.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the run file ({exc.strerror or exc})") from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
            data = data.get("training", data).get("config", data) if isinstance(data, dict) else data
        else:
            data = tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{path}: not a valid {'JSON' if path.suffix.lower() == '.json' else 'TOML'} run file ({exc})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: a run file holds training options by name")
    types = field_types()
    values = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name not in types:
            raise UsageError(f"{path}: unknown training option {key!r}")
        values[name] = _coerce(name, types[name], value, str(path))
    return values


def make_config(values: dict[str, Any], source: str = "the command line") -> TrainConfig:
    """A :class:`TrainConfig` from option values by field name (unset ones keep their defaults); stage and out are required."""
    for name in ("stage", "out"):
        if values.get(name) is None:
            raise UsageError(f"no {'stage' if name == 'stage' else '--out folder'} given ({source} sets none)")
    return TrainConfig(**values)


