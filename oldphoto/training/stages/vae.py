"""VAE_A and VAE_B (published §§3–4): KL + L1 reconstruction, image LSGAN, and for VAE_A the latent GAN."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from oldphoto.models import build_network
from oldphoto.training.data import Batch, Sampler
from oldphoto.training.degrade import degrade_photo
from oldphoto.training.losses import MultiscaleDiscriminator, PatchDiscriminator, init_weights, kl, lsgan
from oldphoto.training.stages.base import Stage, adam, load_net, vae_config
from oldphoto.training.stages.config import TrainConfig


class VAEStage(Stage):
    """VAE_A (``domain='a'``: real and synthetic old photos, latent GAN) or VAE_B (clean photos)."""

    def __init__(self, cfg: TrainConfig, device: torch.device, domain: str) -> None:
        super().__init__(cfg, device)
        self.domain = domain
        self.name = f"vae-{domain}"
        self.output_name = f"vae_{domain}"
        vae = vae_config(cfg)
        self.enc = init_weights(build_network("vae_encoder", {"in_channels": 3, **vae})).to(device)
        self.dec = init_weights(build_network("vae_decoder", {"out_channels": 3, **vae})).to(device)
        self.nets = {"encoder": self.enc, "decoder": self.dec}
        betas = (0.5, 0.999)
        self.optims = {"vae": adam(iter([*self.enc.parameters(), *self.dec.parameters()]), cfg.lr, betas)}
        self.use_d = bool(self.w["gan"] or self.w["fm"])
        if self.use_d:
            self.D = init_weights(
                MultiscaleDiscriminator(in_channels=3, ndf=cfg.ndf, n_layers=cfg.n_layers_d, num_d=cfg.num_d)
            ).to(device)
            self.nets["D"] = self.D
            self.optims["D"] = adam(self.D.parameters(), cfg.lr, betas)
        self.use_dz = domain == "a" and bool(self.w.get("latent_gan"))
        if self.use_dz:
            self.Dz = init_weights(PatchDiscriminator(in_channels=cfg.ngf, ndf=cfg.ndf, n_layers=cfg.n_layers_d)).to(device)
            self.nets["Dz"] = self.Dz
            self.optims["Dz"] = adam(self.Dz.parameters(), cfg.lr, betas)
        if domain == "a" and not cfg.old and self.use_dz:
            self.notes.append("latent GAN has no real old photos to pull (give --old); it stays idle")

    def init_from(self, folder: Path) -> list[str]:
        ckpt = self.output_name
        enc_src = [(ckpt, "encoder")] + ([("quality", "encoder"), ("scratch", "encoder")] if self.domain == "a" else [])
        dec_src = [(ckpt, "decoder")] + ([("quality", "decoder"), ("scratch", "decoder")] if self.domain == "b" else [])
        return [s for s in (load_net(folder, enc_src, self.enc, "encoder"), load_net(folder, dec_src, self.dec, "decoder")) if s]

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


