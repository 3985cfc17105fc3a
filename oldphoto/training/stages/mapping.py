"""The quality and scratch mappings between the frozen VAEs (published §5), and lite's residual wiring."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from oldphoto.errors import UsageError
from oldphoto.models import build_network
from oldphoto.pipeline import add_residual, paint_damage
from oldphoto.training.data import Batch, Sampler
from oldphoto.training.degrade import Damage, degrade_photo
from oldphoto.training.losses import MultiscaleDiscriminator, init_weights, lsgan
from oldphoto.training.stages.base import Stage, adam, kaiming_init, load_net, net_config, vae_config, zero_last_conv
from oldphoto.training.stages.config import TrainConfig


class MappingStage(Stage):
    """The quality mapping between frozen VAEs: latent L1, conditional LSGAN, feature matching."""

    name = "mapping"
    output_name = "quality"

    def __init__(self, cfg: TrainConfig, device: torch.device) -> None:
        super().__init__(cfg, device)
        # End to end from scratch (lite): a residual chain whose encoder trains too needs no
        # VAE runs; its halves start at He init, and the chain starts as the identity.
        fresh = cfg.vae_a is None and cfg.vae_b is None and cfg.residual and cfg.train_encoder
        if not fresh and (cfg.vae_a is None or cfg.vae_b is None):
            raise UsageError(
                "the mapping stage needs --vae-a DIR and --vae-b DIR (outputs of the vae-a and vae-b stages), "
                "or neither with --residual --train-encoder (the whole chain trained from scratch)"
            )
        enc_src = [("vae_a", "encoder"), ("quality", "encoder"), ("scratch", "encoder")]
        dec_src = [("vae_b", "decoder"), ("quality", "decoder"), ("scratch", "decoder")]
        encb_src = [("vae_b", "encoder")]
        if fresh:
            enc_cfg = {"in_channels": 3, **vae_config(cfg)}
            dec_cfg = {"out_channels": 3, **vae_config(cfg)}
        else:
            enc_cfg = net_config(cfg.vae_a, enc_src)
            dec_cfg = net_config(cfg.vae_b, dec_src)
        if enc_cfg is None:
            raise UsageError(f"{cfg.vae_a}: no VAE_A encoder here (vae_a or quality checkpoint)")
        if dec_cfg is None:
            raise UsageError(f"{cfg.vae_b}: no VAE_B decoder here (vae_b or quality checkpoint)")
        self.enc_a = build_network("vae_encoder", enc_cfg).to(device)
        self.dec_b = build_network("vae_decoder", dec_cfg).to(device)
        if fresh:
            kaiming_init(self.enc_a)
            kaiming_init(self.dec_b)
        else:
            load_net(cfg.vae_a, enc_src, self.enc_a, "VAE_A encoder")
            load_net(cfg.vae_b, dec_src, self.dec_b, "VAE_B decoder")
        self.enc_b: nn.Module | None = None
        if self.w["latent_l1"] and not fresh:
            encb_cfg = net_config(cfg.vae_b, encb_src)
            if encb_cfg is None:
                raise UsageError(
                    f"{cfg.vae_b}: the latent L1 loss needs VAE_B's encoder (a vae_b checkpoint); "
                    "imported published weights lack it: use --loss latent_l1=0 --loss image_l1=10"
                )
            self.enc_b = build_network("vae_encoder", encb_cfg).to(device)
            load_net(cfg.vae_b, encb_src, self.enc_b, "VAE_B encoder")
        # A residual model's decoder must produce corrections, not photos: it starts from
        # VAE_B's and trains with the mapping (VAE_A's encoder stays frozen, as published,
        # unless --train-encoder fine-tunes the whole chain).
        if cfg.residual:
            # The correction starts at zero (tanh(0)), so training starts from the input
            # itself rather than from input + a whole VAE_B photo (which it must first unlearn).
            zero_last_conv(self.dec_b)
        for frozen in (None if cfg.train_encoder else self.enc_a, None if cfg.residual else self.dec_b, self.enc_b):
            if frozen is not None:
                frozen.requires_grad_(False).eval()
        latent = int(enc_cfg["ngf"])
        if int(dec_cfg["ngf"]) != latent:
            raise UsageError(f"VAE_A codes have {latent} channels but VAE_B's decoder expects {dec_cfg['ngf']}")
        self.T = (kaiming_init if cfg.norm == "none" else init_weights)(self._build_mapping(latent)).to(device)
        if cfg.mapping_skip:
            zero_last_conv(self.T)  # starts as the identity on the latent
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
        self.optims = {"mapping": adam(iter(trained), g_lr, betas)}
        self.use_d = bool(self.w["gan"] or self.w["fm"])
        if self.use_d:
            self.D = init_weights(
                MultiscaleDiscriminator(in_channels=6, ndf=cfg.ndf, n_layers=cfg.n_layers_d, num_d=cfg.num_d, spectral=self.spectral)
            ).to(device)
            self.nets["D"] = self.D
            self.optims["D"] = adam(self.D.parameters(), d_lr, betas)

    spectral = False
    published_ttur = True

    def _build_mapping(self, latent: int) -> nn.Module:
        config: dict[str, Any] = {"in_channels": latent, "base": self.cfg.base, "width": self.cfg.width, "n_blocks": self.cfg.blocks}
        if self.cfg.mapping_skip:
            config["skip"] = True  # only then, so a published-wiring card keeps the published config
        if self.cfg.norm != "instance":
            config["norm"] = self.cfg.norm
        return build_network("mapping_quality", config)

    def init_from(self, folder: Path) -> list[str]:
        got = [load_net(folder, [(self.output_name, "mapping")], self.T, "mapping")]
        if self.cfg.residual:
            got.append(load_net(folder, [(self.output_name, "decoder")], self.dec_b, "decoder"))
        if self.cfg.train_encoder:
            got.append(load_net(folder, [(self.output_name, "encoder")], self.enc_a, "encoder"))
        return [g for g in got if g]

    def batch(self, sampler: Sampler) -> Batch:
        return sampler.pairs(self.cfg.batch, paint=self.cfg.hole_fill if self.damage is not None else None)

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
        error = yh.float() - y  # one subtraction shared by the pixel losses (unused when all are off)
        if w["image_l1"]:
            losses["image_l1"] = error.abs().mean()
        if w["image_l2"]:
            losses["image_l2"] = error.square().mean()
        if w.get("hole_l1") and mask is not None and float(mask.sum()) > 0:
            holes = (mask > 0).float()  # N×1×H×W; averaged over the damaged pixels and channels only
            losses["hole_l1"] = (error.abs() * holes).sum() / (holes.sum() * y.shape[1])
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
        return paint_damage(x, mask, self.cfg.hole_fill), clean, mask

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
            "pipeline": {
                **load_card(self.output_name).get("pipeline", {}),
                **({"residual": True} if self.cfg.residual else {}),
                **({"hole_fill": self.cfg.hole_fill} if self.cfg.hole_fill != "white" else {}),  # mapping-scratch only (config)
            },
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


