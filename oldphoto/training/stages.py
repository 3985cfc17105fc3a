"""The training stages: what each trains, on which batches, with which losses and optimisers.

Published method (``reference-training.md`` §§3–5, 9): VAE_A (real + synthetic old photos,
with a latent discriminator pulling real-old codes towards synthetic ones), VAE_B (clean
photos), then the quality mapping between the frozen VAEs. Networks are the inference ones,
built by :func:`oldphoto.models.build_network`, so what a stage exports is what ``restore``
loads. Every loss is switchable by its weight (0 = off); the defaults are the published ones,
except the pixel L1 of the VAEs, which the paper has (α = 10) and the published code lacks:
there it is replaced by the VGG loss, which cannot run without ImageNet weights.

Why one module of ~700 lines: the five stages are subclasses of one :class:`Stage` (its
optimisers, export and validation) and each differs from it in a few dozen lines; read
side by side they show what each stage changes. Split it per stage when a sixth arrives.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from oldphoto.errors import UsageError, WeightsError
from oldphoto.models import build_network
from oldphoto.pipeline import add_residual
from oldphoto.training.data import Batch, Sampler, centre_crop, to_batch
from oldphoto.training.degrade import Damage, degrade_photo
from oldphoto.training.losses import MultiscaleDiscriminator, PatchDiscriminator, VGGLoss, feature_matching, init_weights, kl, lsgan
from oldphoto.training.metrics import psnr, ssim, stretch

STAGES = ("vae-a", "vae-b", "mapping", "mapping-scratch", "detector")

#: Published loss weights per stage (see the module docstring for ``l1``).
DEFAULT_WEIGHTS: dict[str, dict[str, float]] = {
    "vae-a": {"kl": 1.0, "l1": 10.0, "gan": 1.0, "fm": 10.0, "vgg": 10.0, "latent_gan": 1.0},
    "vae-b": {"kl": 1.0, "l1": 10.0, "gan": 1.0, "fm": 10.0, "vgg": 10.0},
    "mapping": {"latent_l1": 60.0, "gan": 1.0, "fm": 10.0, "vgg": 10.0, "image_l1": 0.0},
    "mapping-scratch": {"latent_l1": 60.0, "gan": 1.0, "fm": 10.0, "vgg": 10.0, "image_l1": 0.0},
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
        if self.residual and w.get("latent_l1"):
            raise UsageError("--residual has no latent L1 target (use image_l1; latent_l1 must be 0)")
        return w

    def record(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: (str(v) if isinstance(v, Path) else [str(p) for p in v] if k in ("clean", "old") else v) for k, v in d.items()}


def _precision(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """Autocast dtype: None (fp32) on the CPU unless bf16 is asked; fp16 AMP on CUDA by default."""
    p = cfg.precision
    if p not in ("auto", "fp32", "bf16", "fp16"):
        raise UsageError(f"unknown precision {p!r} (auto, fp32, bf16, fp16)")
    if p == "auto":
        return torch.float16 if device.type == "cuda" else None
    if p == "fp16" and device.type != "cuda":
        raise UsageError("fp16 training needs CUDA; use bf16 or fp32 on the CPU")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[p]


def _adam(params: Iterator[nn.Parameter], lr: float, betas: tuple[float, float]) -> torch.optim.Adam:
    return torch.optim.Adam([p for p in params if p.requires_grad], lr=lr, betas=betas)


def _load_net(folder: Path, sources: list[tuple[str, str]], target: nn.Module, what: str) -> str | None:
    """Load ``target`` from the first ``(checkpoint, network)`` of ``sources`` present in ``folder``.

    Returns ``"checkpoint.network"`` or None when no source is there; a shape mismatch is a
    one-line error (the widths given must match the checkpoint's).
    """
    from oldphoto.weights.checkpoint import has_checkpoint, load_checkpoint

    for ckpt, net in sources:
        if not has_checkpoint(folder, ckpt):
            continue
        meta, tensors = load_checkpoint(folder, ckpt)
        if net not in meta["networks"]:
            continue
        prefix = f"{net}."
        state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        try:
            target.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise WeightsError(
                f"{folder}/{ckpt}.safetensors: its {net} does not fit the {what} being trained "
                f"(config {meta['networks'][net]['config']}): {str(exc).splitlines()[0]}"
            ) from None
        return f"{ckpt}.{net}"
    return None


def _net_config(folder: Path, sources: list[tuple[str, str]]) -> dict[str, Any] | None:
    from oldphoto.weights.checkpoint import has_checkpoint, read_meta

    for ckpt, net in sources:
        if has_checkpoint(folder, ckpt):
            meta = read_meta(folder, ckpt)
            if net in meta["networks"]:
                return dict(meta["networks"][net]["config"])
    return None


def _zero_last_conv(net: nn.Module) -> None:
    last = [m for m in net.modules() if isinstance(m, nn.Conv2d)][-1]
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)


def _images_01(t: torch.Tensor) -> torch.Tensor:
    return ((t.float() + 1) / 2).clamp(0, 1)


class Stage:
    """Common machinery: devices, autocast, the gradient scaler, state, export, validation."""

    name: str
    output_name: str
    #: Structured damage the sampler draws for this stage (None: none).
    damage: Damage | None = None

    def __init__(self, cfg: TrainConfig, device: torch.device) -> None:
        self.cfg, self.device = cfg, device
        self.w = cfg.loss_weights()
        self.notes: list[str] = []
        self.vgg: VGGLoss | None = None
        if self.w.get("vgg"):
            if cfg.vgg_weights is None:
                self.w["vgg"] = 0.0
                self.notes.append(
                    "VGG perceptual loss skipped: no --vgg-weights given (ImageNet VGG-19 weights cannot be downloaded here)"
                )
            else:
                self.vgg = VGGLoss(cfg.vgg_weights).to(device)
        self.dtype = _precision(cfg, device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.dtype == torch.float16)
        self.nets: dict[str, nn.Module] = {}
        self.optims: dict[str, torch.optim.Optimizer] = {}

    def autocast(self) -> AbstractContextManager[Any]:
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def _backward_step(self, loss: torch.Tensor, opt: str) -> None:
        o = self.optims[opt]
        o.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(o)

    def _image_terms(
        self, losses: dict[str, torch.Tensor], fake_in: torch.Tensor, real_in: torch.Tensor, made: torch.Tensor, target: torch.Tensor
    ) -> None:
        """The generator's image-space terms: LSGAN and feature matching on the discriminator's
        inputs (``fake_in``/``real_in``), VGG between the made image and its target."""
        if self.use_d:
            self.D.requires_grad_(False)
            with self.autocast():
                fake = self.D(fake_in)
                real = self.D(real_in) if self.w["fm"] else None
            if self.w["gan"]:
                losses["gan"] = lsgan(fake, True)
            if real is not None:
                losses["fm"] = feature_matching(fake, real)
        if self.vgg is not None:
            with self.autocast():
                losses["vgg"] = self.vgg(made, target)

    def _minimise(self, losses: dict[str, torch.Tensor], opt: str) -> dict[str, float]:
        """Step optimiser ``opt`` on the weighted sum of ``losses``; return every term and the total as floats."""
        total: torch.Tensor = sum(self.w[k] * v for k, v in losses.items() if self.w.get(k))  # type: ignore[assignment]
        self._backward_step(total, opt)
        out = {k: float(v.detach()) for k, v in losses.items()}
        out["total"] = float(total.detach())
        return out

    # -- state ---------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "nets": {k: n.state_dict() for k, n in self.nets.items()},
            "optims": {k: o.state_dict() for k, o in self.optims.items()},
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        try:
            for k, n in self.nets.items():
                n.load_state_dict(state["nets"][k], strict=True)
            for k, o in self.optims.items():
                o.load_state_dict(state["optims"][k])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise UsageError(
                f"{self.cfg.out}/state: does not match this run's networks (were the widths changed?): {str(exc).splitlines()[0]}"
            ) from None
        if state.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])

    # -- stage-specific ------------------------------------------------------------------
    def batch(self, sampler: Sampler) -> Batch:
        raise NotImplementedError

    def step(self, batch: Batch) -> dict[str, float]:
        raise NotImplementedError

    def export(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """``(tensors, meta)`` of the stage's output checkpoint (our format)."""
        raise NotImplementedError

    def restore_fn(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def validate(self, images: list[np.ndarray]) -> dict[str, float]:
        """Scores on held-out photos: centre crops, degraded with fixed seeds where the stage
        restores. ``psnr``/``ssim`` compare the raw output, ``psnr_restore`` the output after
        the restore path's min–max stretch (none for a residual model), ``psnr_input`` the degraded input (a baseline, where the
        target is not the input itself)."""
        scores: dict[str, list[float]] = {"psnr": [], "ssim": [], "psnr_restore": [], "psnr_input": []}
        for n in self.nets.values():
            n.eval()
        try:
            for i, img in enumerate(images[: self.cfg.val_count]):
                clean = centre_crop(img, self.cfg.val_size)
                src, target, mask = self.val_pair(clean, i)
                x = to_batch([src]).to(self.device)
                m = _mask_tensor(mask, self.device)
                with torch.no_grad(), self.autocast():
                    out = _images_01(self.restore_fn(x, m))[0].cpu()
                t = _images_01(to_batch([target]))[0]
                scores["psnr"].append(psnr(out, t))
                scores["ssim"].append(ssim(out, t))
                scores["psnr_restore"].append(psnr(out if self.cfg.residual else stretch(out), t))
                if src is not target:
                    scores["psnr_input"].append(psnr(_images_01(to_batch([src]))[0], t))
        finally:
            for n in self.trainable():
                n.train()
        return {k: float(np.mean(v)) for k, v in scores.items() if v}

    def val_pair(self, clean: np.ndarray, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(input, target, damage mask or None) of held-out photo ``i``, fixed by its index."""
        raise NotImplementedError

    def trainable(self) -> list[nn.Module]:
        return list(self.nets.values())


class VAEStage(Stage):
    """VAE_A (``domain='a'``: real and synthetic old photos, latent GAN) or VAE_B (clean photos)."""

    def __init__(self, cfg: TrainConfig, device: torch.device, domain: str) -> None:
        super().__init__(cfg, device)
        self.domain = domain
        self.name = f"vae-{domain}"
        self.output_name = f"vae_{domain}"
        vae = {"ngf": cfg.ngf, "n_downsample": cfg.vae_downsample, "n_blocks": cfg.vae_blocks}
        self.enc = init_weights(build_network("vae_encoder", {"in_channels": 3, **vae})).to(device)
        self.dec = init_weights(build_network("vae_decoder", {"out_channels": 3, **vae})).to(device)
        self.nets = {"encoder": self.enc, "decoder": self.dec}
        betas = (0.5, 0.999)
        self.optims = {"vae": _adam(iter([*self.enc.parameters(), *self.dec.parameters()]), cfg.lr, betas)}
        self.use_d = bool(self.w["gan"] or self.w["fm"])
        if self.use_d:
            self.D = init_weights(
                MultiscaleDiscriminator(in_channels=3, ndf=cfg.ndf, n_layers=cfg.n_layers_d, num_d=cfg.num_d)
            ).to(device)
            self.nets["D"] = self.D
            self.optims["D"] = _adam(self.D.parameters(), cfg.lr, betas)
        self.use_dz = domain == "a" and bool(self.w.get("latent_gan"))
        if self.use_dz:
            self.Dz = init_weights(PatchDiscriminator(in_channels=cfg.ngf, ndf=cfg.ndf, n_layers=cfg.n_layers_d)).to(device)
            self.nets["Dz"] = self.Dz
            self.optims["Dz"] = _adam(self.Dz.parameters(), cfg.lr, betas)
        if domain == "a" and not cfg.old and self.use_dz:
            self.notes.append("latent GAN has no real old photos to pull (give --old); it stays idle")

    def init_from(self, folder: Path) -> list[str]:
        ckpt = self.output_name
        enc_src = [(ckpt, "encoder")] + ([("quality", "encoder"), ("scratch", "encoder")] if self.domain == "a" else [])
        dec_src = [(ckpt, "decoder")] + ([("quality", "decoder"), ("scratch", "decoder")] if self.domain == "b" else [])
        return [s for s in (_load_net(folder, enc_src, self.enc, "encoder"), _load_net(folder, dec_src, self.dec, "decoder")) if s]

    def batch(self, sampler: Sampler) -> Batch:
        return sampler.domain_a(self.cfg.batch) if self.domain == "a" else sampler.domain_b(self.cfg.batch)

    def step(self, b: Batch) -> dict[str, float]:
        x = b.x.to(self.device)
        w = self.w
        with self.autocast():
            mu = self.enc(x)
            xh = self.dec(mu + torch.randn_like(mu))  # the reduced VAE's sampling: unit variance
        losses: dict[str, torch.Tensor] = {}
        if w["kl"]:
            losses["kl"] = kl(mu)
        if w["l1"]:
            losses["l1"] = (xh.float() - x).abs().mean()
        self._image_terms(losses, xh, x, xh, x)
        pair = self._latent_pair(mu, b.real) if self.use_dz else None
        if pair is not None:
            self.Dz.requires_grad_(False)
            with self.autocast():
                losses["latent_gan"] = ((self.Dz(pair[0])[-1].float() - 1) ** 2).mean()
        out = self._minimise(losses, "vae")
        if self.use_d:
            self.D.requires_grad_(True)
            with self.autocast():
                d_loss = 0.5 * (lsgan(self.D(xh.detach()), False) + lsgan(self.D(x), True))
            self._backward_step(d_loss, "D")
            out["D"] = float(d_loss.detach())
        if pair is not None:
            self.Dz.requires_grad_(True)
            mu_real, mu_syn = pair[0].detach(), pair[1].detach()
            with self.autocast():
                # Published convention: synthetic codes are D_z's "real" class.
                dz = 0.5 * ((self.Dz(mu_real)[-1].float() ** 2).mean() + ((self.Dz(mu_syn)[-1].float() - 1) ** 2).mean())
            self._backward_step(dz, "Dz")
            out["Dz"] = float(dz.detach())
        self.scaler.update()
        return out

    @staticmethod
    def _latent_pair(mu: torch.Tensor, real: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Real-old and synthetic codes cut to the same count (the published balancing)."""
        if real is None:
            return None
        r = torch.nonzero(real, as_tuple=True)[0]
        s = torch.nonzero(~real, as_tuple=True)[0]
        n = min(len(r), len(s))
        if n == 0:
            return None
        return mu[r[:n].to(mu.device)], mu[s[:n].to(mu.device)]

    def restore_fn(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return self.dec(self.enc(x))

    def val_pair(self, clean: np.ndarray, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        if self.domain == "a":
            degraded = degrade_photo(clean, 10_000 + i, grey=False)[0]
            return degraded, degraded, None
        return clean, clean, None

    def export(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors = {f"encoder.{k}": v for k, v in self.enc.state_dict().items()}
        tensors.update({f"decoder.{k}": v for k, v in self.dec.state_dict().items()})
        what = "real and synthetic old photos" if self.domain == "a" else "clean photos"
        meta = {
            "networks": {
                "encoder": {"arch": "vae_encoder", "config": dict(self.enc.config)},
                "decoder": {"arch": "vae_decoder", "config": dict(self.dec.config)},
            },
            "description": f"VAE_{self.domain.upper()} trained by 'oldphoto train {self.name}': encodes and decodes {what}.",
        }
        return tensors, meta

    def trainable(self) -> list[nn.Module]:
        return list(self.nets.values())


class MappingStage(Stage):
    """The quality mapping between frozen VAEs: latent L1, conditional LSGAN, feature matching."""

    name = "mapping"
    output_name = "quality"

    def __init__(self, cfg: TrainConfig, device: torch.device) -> None:
        super().__init__(cfg, device)
        if cfg.vae_a is None or cfg.vae_b is None:
            raise UsageError("the mapping stage needs --vae-a DIR and --vae-b DIR (outputs of the vae-a and vae-b stages)")
        enc_src = [("vae_a", "encoder"), ("quality", "encoder"), ("scratch", "encoder")]
        dec_src = [("vae_b", "decoder"), ("quality", "decoder"), ("scratch", "decoder")]
        encb_src = [("vae_b", "encoder")]
        enc_cfg = _net_config(cfg.vae_a, enc_src)
        dec_cfg = _net_config(cfg.vae_b, dec_src)
        if enc_cfg is None:
            raise UsageError(f"{cfg.vae_a}: no VAE_A encoder here (vae_a or quality checkpoint)")
        if dec_cfg is None:
            raise UsageError(f"{cfg.vae_b}: no VAE_B decoder here (vae_b or quality checkpoint)")
        self.enc_a = build_network("vae_encoder", enc_cfg).to(device)
        self.dec_b = build_network("vae_decoder", dec_cfg).to(device)
        _load_net(cfg.vae_a, enc_src, self.enc_a, "VAE_A encoder")
        _load_net(cfg.vae_b, dec_src, self.dec_b, "VAE_B decoder")
        self.enc_b: nn.Module | None = None
        if self.w["latent_l1"]:
            encb_cfg = _net_config(cfg.vae_b, encb_src)
            if encb_cfg is None:
                raise UsageError(
                    f"{cfg.vae_b}: the latent L1 loss needs VAE_B's encoder (a vae_b checkpoint); "
                    "imported published weights lack it: use --loss latent_l1=0 --loss image_l1=10"
                )
            self.enc_b = build_network("vae_encoder", encb_cfg).to(device)
            _load_net(cfg.vae_b, encb_src, self.enc_b, "VAE_B encoder")
        # A residual model's decoder must produce corrections, not photos: it starts from
        # VAE_B's and trains with the mapping (VAE_A's encoder stays frozen, as published,
        # unless --train-encoder fine-tunes the whole chain).
        if cfg.residual:
            # The correction starts at zero (tanh(0)), so training starts from the input
            # itself rather than from input + a whole VAE_B photo (which it must first unlearn).
            _zero_last_conv(self.dec_b)
        for frozen in (None if cfg.train_encoder else self.enc_a, None if cfg.residual else self.dec_b, self.enc_b):
            if frozen is not None:
                frozen.requires_grad_(False).eval()
        latent = int(enc_cfg["ngf"])
        if int(dec_cfg["ngf"]) != latent:
            raise UsageError(f"VAE_A codes have {latent} channels but VAE_B's decoder expects {dec_cfg['ngf']}")
        self.T = init_weights(self._build_mapping(latent)).to(device)
        if cfg.mapping_skip:
            _zero_last_conv(self.T)  # starts as the identity on the latent
        self.nets = {"mapping": self.T}
        if cfg.residual:
            self.nets["decoder"] = self.dec_b
        if cfg.train_encoder:
            self.nets["encoder"] = self.enc_a
        if self.published_ttur if cfg.ttur is None else cfg.ttur:
            g_lr, d_lr, betas = cfg.lr / 2, cfg.lr * 2, (0.0, 0.9)
        else:
            g_lr, d_lr, betas = cfg.lr, cfg.lr, (0.5, 0.999)
        trained = [*self.T.parameters(), *(self.dec_b.parameters() if cfg.residual else [])]
        trained += list(self.enc_a.parameters()) if cfg.train_encoder else []
        self.optims = {"mapping": _adam(iter(trained), g_lr, betas)}
        self.use_d = bool(self.w["gan"] or self.w["fm"])
        if self.use_d:
            self.D = init_weights(
                MultiscaleDiscriminator(in_channels=6, ndf=cfg.ndf, n_layers=cfg.n_layers_d, num_d=cfg.num_d, spectral=self.spectral)
            ).to(device)
            self.nets["D"] = self.D
            self.optims["D"] = _adam(self.D.parameters(), d_lr, betas)

    spectral = False
    published_ttur = True

    def _build_mapping(self, latent: int) -> nn.Module:
        config = {"in_channels": latent, "base": self.cfg.base, "width": self.cfg.width, "n_blocks": self.cfg.blocks}
        return build_network("mapping_quality", {**config, **({"skip": True} if self.cfg.mapping_skip else {})})

    def init_from(self, folder: Path) -> list[str]:
        got = [_load_net(folder, [(self.output_name, "mapping")], self.T, "mapping")]
        if self.cfg.residual:
            got.append(_load_net(folder, [(self.output_name, "decoder")], self.dec_b, "decoder"))
        if self.cfg.train_encoder:
            got.append(_load_net(folder, [(self.output_name, "encoder")], self.enc_a, "encoder"))
        return [g for g in got if g]

    def batch(self, sampler: Sampler) -> Batch:
        return sampler.pairs(self.cfg.batch, paint_white=self.damage is not None)

    def _map(self, z: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return self.T(z)

    def step(self, b: Batch) -> dict[str, float]:
        x, y = b.x.to(self.device), b.y.to(self.device)  # type: ignore[union-attr]
        mask = b.mask.to(self.device) if b.mask is not None else None
        w = self.w
        with torch.no_grad(), self.autocast():
            zy = self.enc_b(y) if self.enc_b is not None else None
        with torch.set_grad_enabled(self.cfg.train_encoder), self.autocast():
            zx = self.enc_a(x)
        with self.autocast():
            zh = self._map(zx, mask)
            yh = add_residual(self.dec_b(zh), x, self.cfg.residual)
        losses: dict[str, torch.Tensor] = {}
        if zy is not None:
            losses["latent_l1"] = (zh.float() - zy.float()).abs().mean()
        if w["image_l1"]:
            losses["image_l1"] = (yh.float() - y).abs().mean()
        self._image_terms(losses, torch.cat([x, yh.to(x.dtype)], 1), torch.cat([x, y], 1), yh, y)
        out = self._minimise(losses, "mapping")
        if self.use_d:
            self.D.requires_grad_(True)
            with self.autocast():
                d_fake = self.D(torch.cat([x, yh.detach().to(x.dtype)], 1))
                d_real = self.D(torch.cat([x, y], 1))
                d_loss = 0.5 * (lsgan(d_fake, False) + lsgan(d_real, True))
            self._backward_step(d_loss, "D")
            out["D"] = float(d_loss.detach())
        self.scaler.update()
        return out

    def restore_fn(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return add_residual(self.dec_b(self._map(self.enc_a(x), mask)), x, self.cfg.residual)

    def val_pair(self, clean: np.ndarray, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        if self.damage is None:
            return degrade_photo(clean, 10_000 + i, grey=False)[0], clean, None
        x, mask, _ = degrade_photo(clean, 10_000 + i, grey=False, damage=self.damage)
        x = x.copy()
        x[mask > 0] = 255
        return x, clean, mask

    def export(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        from oldphoto.weights.cards import load_card

        tensors = {f"encoder.{k}": v for k, v in self.enc_a.state_dict().items()}
        tensors.update({f"mapping.{k}": v for k, v in self.T.state_dict().items()})
        tensors.update({f"decoder.{k}": v for k, v in self.dec_b.state_dict().items()})
        arch = {"quality": "mapping_quality", "scratch": "mapping_scratch"}[self.output_name]
        meta = {
            "networks": {
                "encoder": {"arch": "vae_encoder", "config": dict(self.enc_a.config)},
                "mapping": {"arch": arch, "config": dict(self.T.config)},
                "decoder": {"arch": "vae_decoder", "config": dict(self.dec_b.config)},
            },
            "pipeline": {**load_card(self.output_name).get("pipeline", {}), **({"residual": True} if self.cfg.residual else {})},
            "description": f"Global restoration ({self.output_name} mode) trained by 'oldphoto train {self.name}': "
            + ("restored = input + VAE decoder(mapping(VAE_A encoder(input))), no min-max stretch (global residual)."
               if self.cfg.residual else "VAE_A encoder -> mapping -> VAE_B decoder."),
        }
        return tensors, meta


class ScratchMappingStage(MappingStage):
    """The scratch mapping (partial non-local block), trained on pairs with painted damage.

    As published (§6): half the samples carry damage, painted white; the mapping sees the
    mask; the conditional discriminator has spectral norm; no TTUR (betas 0.5, 0.999, one
    learning rate); the same losses as the quality mapping, none specific to the mask.
    Damage is procedural here, the published masks being unreleased.
    """

    name = "mapping-scratch"
    output_name = "scratch"
    spectral = True
    published_ttur = False
    damage = Damage()

    def _build_mapping(self, latent: int) -> nn.Module:
        from oldphoto.training.differentiable import make_trainable

        return make_trainable(build_network(
            "mapping_scratch",
            {"in_channels": latent, "base": self.cfg.base, "width": self.cfg.width, "n_blocks": self.cfg.blocks,
             "nl_blocks": self.cfg.nl_blocks},
        ))

    def _map(self, z: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if mask is None:
            mask = z.new_zeros((z.shape[0], 1, z.shape[2] * 4, z.shape[3] * 4))
        return self.T(z, mask)


class DetectorStage(Stage):
    """The scratch-detection UNet on synthetic damage (its published training is unreleased).

    Adam (2e-4, betas 0.5, 0.999) like the other stages: an assumption, not published.
    Validation reports mask precision/recall/F1/IoU at the inference threshold (0.4).
    """

    name = "detector"
    output_name = "detector"
    damage = Damage()

    def __init__(self, cfg: TrainConfig, device: torch.device) -> None:
        super().__init__(cfg, device)
        if cfg.crop % 16:
            raise UsageError(f"the detector needs --crop a multiple of 16, got {cfg.crop}")
        self.unet = init_weights(build_network("scratch_unet", {"in_channels": 1, "out_channels": 1, "depth": 4, "wf": cfg.wf})).to(device)
        self.nets = {"unet": self.unet}
        self.optims = {"unet": _adam(self.unet.parameters(), cfg.lr, (0.5, 0.999))}

    def init_from(self, folder: Path) -> list[str]:
        got = _load_net(folder, [("detector", "unet")], self.unet, "detector")
        return [got] if got else []

    def batch(self, sampler: Sampler) -> Batch:
        return sampler.detection(self.cfg.batch)

    def step(self, b: Batch) -> dict[str, float]:
        x, m = b.x.to(self.device), b.mask.to(self.device)  # type: ignore[union-attr]
        with self.autocast():
            logits = self.unet(x)
        logits = logits.float()
        losses: dict[str, torch.Tensor] = {}
        if self.w["bce"]:
            losses["bce"] = torch.nn.functional.binary_cross_entropy_with_logits(logits, m)
        if self.w["dice"]:
            p = torch.sigmoid(logits)
            losses["dice"] = 1 - (2 * (p * m).sum() + 1) / (p.sum() + m.sum() + 1)
        out = self._minimise(losses, "unet")
        self.scaler.update()
        return out

    def validate(self, images: list[np.ndarray]) -> dict[str, float]:
        from oldphoto.training.data import grey_batch

        tp = fp = fn = 0
        self.unet.eval()
        try:
            for i, img in enumerate(images[: self.cfg.val_count]):
                clean = centre_crop(img, self.cfg.val_size)
                clean = clean[: clean.shape[0] // 16 * 16, : clean.shape[1] // 16 * 16]
                x, mask, _ = degrade_photo(clean, 10_000 + i, grey=False, damage=self.damage)
                with torch.no_grad(), self.autocast():
                    prob = torch.sigmoid(self.unet(grey_batch([x]).to(self.device)).float())[0, 0].cpu().numpy()
                pred, truth = prob >= 0.4, mask > 0
                tp += int((pred & truth).sum())
                fp += int((pred & ~truth).sum())
                fn += int((~pred & truth).sum())
        finally:
            self.unet.train()
        precision = tp / max(1, tp + fp)
        recall = tp / max(1, tp + fn)
        return {"precision": precision, "recall": recall, "f1": 2 * precision * recall / max(1e-9, precision + recall),
                "iou": tp / max(1, tp + fp + fn)}

    def export(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        from oldphoto.weights.cards import load_card

        meta = {
            "networks": {"unet": {"arch": "scratch_unet", "config": dict(self.unet.config)}},
            "pipeline": load_card("detector").get("pipeline", {}),
            "description": "Scratch-detection UNet trained by 'oldphoto train detector' on procedural damage.",
        }
        return {f"unet.{k}": v for k, v in self.unet.state_dict().items()}, meta


def _mask_tensor(mask: np.ndarray | None, device: torch.device) -> torch.Tensor | None:
    if mask is None:
        return None
    return torch.from_numpy((mask > 0).astype(np.float32))[None, None].to(device)


def make_stage(cfg: TrainConfig, device: torch.device) -> Stage:
    if cfg.stage not in STAGES:
        raise UsageError(f"unknown stage {cfg.stage!r} (choose {', '.join(STAGES)})")
    if cfg.stage == "mapping":
        return MappingStage(cfg, device)
    if cfg.stage == "mapping-scratch":
        return ScratchMappingStage(cfg, device)
    if cfg.stage == "detector":
        return DetectorStage(cfg, device)
    return VAEStage(cfg, device, cfg.stage[-1])
