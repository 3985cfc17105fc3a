"""The parity data's deterministic weight rule, and published-format state dicts built from it.

The published code was run with every weight set by a splitmix64-based rule (see
``tests/data/parity/README.md``); rebuilding the same state dicts here lets the tests drive
the real import path with ``.pth`` files laid out exactly like the published checkpoints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def rule_values(index: int, n: int, mean: float, std: float) -> np.ndarray:
    """Return the ``n`` float32 values the rule gives to the entry with ``index``."""
    with np.errstate(over="ignore"):
        x = np.arange(n, dtype=np.uint64) + np.uint64(index) * _GOLDEN
        x ^= x >> np.uint64(30)
        x *= _M1
        x ^= x >> np.uint64(27)
        x *= _M2
        x ^= x >> np.uint64(31)
    u = (x >> np.uint64(11)).astype(np.float64) / float(2**53)
    return (mean + std * np.sqrt(12.0) * (u - 0.5)).astype(np.float32)


def build_state_dict(entries: list[dict[str, Any]], fixed: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """Build a published-format state dict (name -> torch tensor) from manifest entries."""
    import torch

    out: dict[str, Any] = {}
    for e in entries:
        shape = tuple(e["shape"])
        if e["init"] == "hash":
            n = int(np.prod(shape)) if shape else 1
            arr = rule_values(e["index"], n, e["mean"], e["std"]).reshape(shape)
            out[e["key"]] = torch.from_numpy(arr.copy())
        elif e["init"] == "fixed":
            assert fixed is not None, f"entry {e['key']} needs the fixed-buffer file"
            out[e["key"]] = torch.from_numpy(np.asarray(fixed[e["key"]]).copy())
        elif e["init"] == "keep":
            out[e["key"]] = torch.tensor(e["value"], dtype=getattr(torch, e["dtype"]))
        else:
            raise ValueError(f"unknown init {e['init']!r} for {e['key']}")
    return out


def save_pth(state: dict[str, Any], path: Path, container: str | None = None) -> None:
    """Save ``state`` as a pickle the way the published code did (optionally wrapped)."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({container: state} if container else state, path)
