"""The scratch-detection UNet on procedural damage masks (training unpublished: BCE, optional Dice)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from oldphoto.errors import UsageError
from oldphoto.models import build_network
from oldphoto.training.data import Batch, Sampler, centre_crop
from oldphoto.training.degrade import Damage, degrade_photo
from oldphoto.training.losses import init_weights
from oldphoto.training.stages.base import Stage, adam, load_net, net_config
from oldphoto.training.stages.config import TrainConfig


class DetectorStage(Stage):
    """The scratch-detection UNet on synthetic damage (its published training is unreleased).

    Adam (2e-4, betas 0.5, 0.999) like the other stages: an assumption, not published.
    Validation reports mask precision/recall/F1/IoU at the inference threshold (0.4).
    """

    name = "detector"
    output_name = "detector"
    damage = Damage()  # what validation draws, the same for every run so that runs compare

    def __init__(self, cfg: TrainConfig, device: torch.device) -> None:
        super().__init__(cfg, device)
        if cfg.crop % 16:
            raise UsageError(f"the detector needs --crop a multiple of 16, got {cfg.crop}")
        channels = 3 if cfg.colour else 1
        config = {"in_channels": channels, "out_channels": 1, "depth": 4, "wf": cfg.wf}
        if cfg.first_width is not None:
            config["first_width"] = cfg.first_width
        self.unet = init_weights(build_network("scratch_unet", config)).to(device)
        self.nets = {"unet": self.unet}
        self.optims = {"unet": adam(self.unet.parameters(), cfg.lr, (0.5, 0.999))}
        kinds = Damage().p_kind | {"dust": cfg.p_dust}
        self.train_damage = Damage(p_kind=kinds, crack_length=(cfg.crack_min, 1.0), stroke_light=1.0 - cfg.dark_strokes,
                                   dust_light=None if cfg.dark_dust is None else 1.0 - cfg.dark_dust)

    def init_from(self, folder: Path) -> list[str]:
        source = net_config(folder, [("detector", "unet")]) or {}
        spread = self.cfg.colour and int(source.get("in_channels", 1)) == 1
        wide = self.unet.first[1].out_channels
        widened_from: list[int] = []

        def adapt(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            state = spread_grey(state) if spread else state
            narrow = state["first.1.weight"].shape[0]
            if narrow >= wide:
                return state
            widened_from.append(narrow)
            return widen_first_level(state, {k: v.detach().cpu() for k, v in self.unet.state_dict().items()})

        got = load_net(folder, [("detector", "unet")], self.unet, "detector", adapt=adapt)
        if got and spread:
            got += " (grey, spread over RGB by luma)"
        if got and widened_from:
            got += f" (full-resolution level widened from {widened_from[0]} to {wide} channels)"
        return [got] if got else []

    def batch(self, sampler: Sampler) -> Batch:
        return sampler.detection(self.cfg.batch, damage=self.train_damage, rescale=self.cfg.rescale, p_damage=self.cfg.p_damage, p_rescan=self.cfg.p_rescan,
                                 p_decoy=self.cfg.p_decoy, min_change=self.cfg.mask_min_change, p_dark_decoy=self.cfg.p_dark_decoy,
                                 damage_zoom=self.cfg.damage_zoom, colour=self.cfg.colour)

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
        from oldphoto.training.data import detector_batch

        tp = fp = fn = 0
        self.unet.eval()
        try:
            for i, img in enumerate(images[: self.cfg.val_count]):
                clean = centre_crop(img, self.cfg.val_size)
                clean = clean[: clean.shape[0] // 16 * 16, : clean.shape[1] // 16 * 16]
                x, mask, _ = degrade_photo(clean, 10_000 + i, grey=False, damage=self.damage)
                with torch.no_grad(), self.autocast():
                    prob = torch.sigmoid(self.unet(detector_batch([x], self.cfg.colour).to(self.device)).float())[0, 0].cpu().numpy()
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




#: Pillow's "L" weights (ITU-R 601) for red, green and blue: the grey a grey detector reads.
LUMA = (0.299, 0.587, 0.114)


def spread_grey(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A grey detector's UNet state for a colour UNet: its first layer's weights times each channel's
    luma weight, so on any photo the colour UNet starts equal to the grey one."""
    first = state["first.1.weight"].float()  # a half-precision card's weights times 0.299 would round again
    return {**state, "first.1.weight": torch.cat([first * c for c in LUMA], dim=1)}


def widen_first_level(state: dict[str, torch.Tensor], fresh: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A trained UNet's state grown to the wider full-resolution level of ``fresh`` (a newly
    initialised UNet's state), so that it computes exactly what the narrow one did: trained
    weights keep their place, every new weight takes ``fresh``'s value, and the weights that
    carry a new channel into an old one (or into the output) are zero. Gradient still reaches
    them, since the new channels' activations are not zero, so they start learning at once."""
    out = {}
    for key, new in fresh.items():
        old = state[key].to(new.dtype)
        if old.shape == new.shape:
            out[key] = old
            continue
        grown = new.clone()
        keep = [slice(0, n) for n in old.shape]
        if key.endswith("conv_block.block.1.weight"):  # reads [upsampled, skip]: each half grows on its own
            half, wide = old.shape[1] // 2, new.shape[1] // 2
            grown[:old.shape[0], :] = 0.0
            grown[keep[0], :half] = old[:, :half]
            grown[keep[0], wide:wide + half] = old[:, half:]
        else:
            if old.dim() == 4 and old.shape[1] < new.shape[1]:  # new inputs into old outputs
                grown[:old.shape[0], old.shape[1]:] = 0.0
            grown[tuple(keep)] = old
        out[key] = grown
    return out
