"""Rebuild the parity data's published checkpoints as ``.pth`` files in the published layout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from tests.support.weight_rule import build_state_dict, save_pth

PARITY = Path(__file__).resolve().parent.parent / "data" / "parity"

#: Published file of each manifest part, per mode.
LAYOUT = {
    "quality": {
        "vae_a": "restoration/VAE_A_quality/latest_net_G.pth",
        "vae_b": "restoration/VAE_B_quality/latest_net_G.pth",
        "mapping": "restoration/mapping_quality/latest_net_mapping_net.pth",
    },
    "scratch": {
        "vae_a": "restoration/VAE_A_quality/latest_net_G.pth",
        "vae_b": "restoration/VAE_B_scratch/latest_net_G.pth",
        "mapping": "restoration/mapping_scratch/latest_net_mapping_net.pth",
    },
    "hr": {
        "vae_a": "restoration/VAE_A_quality/latest_net_G.pth",
        "vae_b": "restoration/VAE_B_scratch/latest_net_G.pth",
        "mapping": "restoration/mapping_Patch_Attention/latest_net_mapping_net.pth",
    },
}
DETECTOR_FILE = "detection/FT_Epoch_latest.pt"


def manifest(mode: str) -> dict[str, Any]:
    """The parity manifest of ``mode`` (quality, scratch, hr or detection)."""
    return json.loads((PARITY / mode / "manifest.json").read_text())


def tensor(mode: str, name: str) -> np.ndarray:
    """A parity tensor, e.g. ``tensor("quality", "latent")``."""
    return np.load(PARITY / mode / f"{name}.npy")


def reference(mode: str, name: str) -> np.ndarray:
    """The float64 result of the published networks for ``mode``'s tensor ``name`` (the exact answer)."""
    with np.load(PARITY / mode / "fp64.npz") as data:
        return data[name]


def published_error(mode: str, name: str) -> float:
    """How far the published code's own float32 result is from float64 (max abs)."""
    return float(np.abs(tensor(mode, name).astype(np.float64) - reference(mode, name)).max())


def tolerance(mode: str, name: str) -> float:
    """The bound a float32 port meets on any CPU: max(1e-4, 2 × the published float32 error)."""
    return max(1e-4, 2.0 * published_error(mode, name))


#: Lines the parity tests report (never assert) about this CPU's float32 numbers; printed at the end.
REPORT: list[str] = []


def write_published_mode(mode: str, root: Path) -> Path:
    """Write ``mode``'s three published checkpoint files under ``root``; return ``root``."""
    m = manifest(mode)
    for part, rel in LAYOUT[mode].items():
        save_pth(build_state_dict(m[part]), root / rel)
    return root


def write_published_detector(root: Path) -> Path:
    """Write the detector checkpoint (wrapped in ``model_state``, as published) under ``root``."""
    fixed = dict(np.load(PARITY / "detection_fixed.npz"))
    save_pth(build_state_dict(manifest("detection")["unet"], fixed), root / DETECTOR_FILE, container="model_state")
    return root
