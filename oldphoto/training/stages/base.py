"""What every stage shares: its optimisers, checkpoint loading, validation and export (:class:`Stage`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from oldphoto import devices
from oldphoto.errors import UsageError, WeightsError
from oldphoto.training.data import Batch, Sampler, centre_crop, to_batch
from oldphoto.training.degrade import Damage
from oldphoto.training.losses import VGGLoss, feature_matching, lsgan
from oldphoto.training.metrics import psnr, ssim, stretch
from oldphoto.training.stages.config import TrainConfig


def adam(params: Iterator[nn.Parameter], lr: float, betas: tuple[float, float]) -> torch.optim.Adam:
    return torch.optim.Adam([p for p in params if p.requires_grad], lr=lr, betas=betas)


def load_net(folder: Path, sources: list[tuple[str, str]], target: nn.Module, what: str,
             adapt: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None) -> str | None:
    """Load ``target`` from the first ``(checkpoint, network)`` of ``sources`` present in ``folder``.

    Returns ``"checkpoint.network"`` or None when no source is there; a shape mismatch is a
    one-line error (the widths given must match the checkpoint's). ``adapt`` reshapes the
    checkpoint's state first (a grey detector's first layer spread over RGB).
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
        if adapt is not None:
            state = adapt(state)
        try:
            target.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise WeightsError(
                f"{folder}/{ckpt}.safetensors: its {net} does not fit the {what} being trained "
                f"(config {meta['networks'][net]['config']}): {str(exc).splitlines()[0]}"
            ) from None
        return f"{ckpt}.{net}"
    return None


def net_config(folder: Path, sources: list[tuple[str, str]]) -> dict[str, Any] | None:
    from oldphoto.weights.checkpoint import has_checkpoint, read_meta

    for ckpt, net in sources:
        if has_checkpoint(folder, ckpt):
            meta = read_meta(folder, ckpt)
            if net in meta["networks"]:
                return dict(meta["networks"][net]["config"])
    return None


def zero_last_conv(net: nn.Module) -> None:
    last = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))][-1]
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)


def vae_config(cfg: TrainConfig) -> dict[str, Any]:
    """The VAE halves' config from the run's widths; ``norm``/``stem`` only when not published."""
    vae: dict[str, Any] = {"ngf": cfg.ngf, "n_downsample": cfg.vae_downsample, "n_blocks": cfg.vae_blocks}
    if cfg.norm != "instance":
        vae["norm"] = cfg.norm
    if cfg.stem != "conv7":
        vae["stem"] = cfg.stem
    return vae


def kaiming_init(net: nn.Module) -> nn.Module:
    """He-normal conv weights and zero biases: a network without norms needs them to train.

    The published N(0, 0.02) relies on the instance norms to restore each layer's scale;
    without norms a 64-channel layer would shrink its input to about half, so ten layers
    would leave almost no signal and no gradient.
    """
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return net


def images_01(t: torch.Tensor) -> torch.Tensor:
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
        self.precision = devices.training_precision(cfg.precision, device, cfg.stage)
        self.dtype = None if self.precision == "fp32" else devices.dtype(self.precision)
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
                rates = [g["lr"] for g in o.param_groups]  # this run file's rates, not the saved run's
                o.load_state_dict(state["optims"][k])
                for group, lr in zip(o.param_groups, rates):
                    group["lr"] = group["initial_lr"] = lr
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
                m = mask_tensor(mask, self.device)
                with torch.no_grad(), self.autocast():
                    out = images_01(self.restore_fn(x, m))[0].cpu()
                t = images_01(to_batch([target]))[0]
                scores["psnr"].append(psnr(out, t))
                scores["ssim"].append(ssim(out, t))
                scores["psnr_restore"].append(psnr(out if self.cfg.residual else stretch(out), t))
                if src is not target:
                    scores["psnr_input"].append(psnr(images_01(to_batch([src]))[0], t))
        finally:
            for n in self.trainable():
                n.train()
        return {k: float(np.mean(v)) for k, v in scores.items() if v}

    def val_pair(self, clean: np.ndarray, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(input, target, damage mask or None) of held-out photo ``i``, fixed by its index."""
        raise NotImplementedError

    def trainable(self) -> list[nn.Module]:
        return list(self.nets.values())



def mask_tensor(mask: np.ndarray | None, device: torch.device) -> torch.Tensor | None:
    if mask is None:
        return None
    return torch.from_numpy((mask > 0).astype(np.float32))[None, None].to(device)


