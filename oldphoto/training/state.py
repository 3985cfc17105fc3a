"""Resumable training state without pickles: tensors in safetensors, the rest in JSON.

A training state (network and optimiser state dicts, step, RNG states) is a nest of dicts,
lists and tensors. :func:`split` replaces every tensor with a reference and collects the
tensors; :func:`join` puts them back. Dict keys keep their JSON type inside ``[key, value]``
pairs, so an optimiser's integer parameter ids come back as integers. Nothing here ever
unpickles, matching the rule that only safetensors are read.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from oldphoto.errors import UsageError
from oldphoto.fsutil import atomic_path, atomic_write_bytes

STATE_FORMAT = "oldphoto-train-state"
STATE_VERSION = 1


def split(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """JSON-able copy of ``obj`` with tensors moved into ``tensors`` under ``prefix``-based keys."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().to("cpu").contiguous()
        return {"$tensor": prefix}
    if isinstance(obj, dict):
        return {"$dict": [[k, split(v, f"{prefix}.{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [split(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} in a training state")


def join(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`split`."""
    if isinstance(obj, dict):
        if "$tensor" in obj:
            return tensors[obj["$tensor"]]
        return {k: join(v, tensors) for k, v in obj["$dict"]}
    if isinstance(obj, list):
        return [join(v, tensors) for v in obj]
    return obj


def rng_state(np_rng: np.random.Generator) -> dict[str, Any]:
    """Every random stream a step draws from: torch (CPU and CUDA), the data generator, Python."""
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": np_rng.bit_generator.state,
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], np_rng: np.random.Generator) -> None:
    torch.set_rng_state(state["torch"])
    np_rng.bit_generator.state = state["numpy"]
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_state(folder: Path, state: dict[str, Any]) -> None:
    """Write ``state.safetensors`` then ``state.json`` (the JSON last: it marks a complete state)."""
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    tree = split(state, "s", tensors)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / "state.safetensors") as tmp:
        save_file(tensors, str(tmp))
    record = {"format": STATE_FORMAT, "version": STATE_VERSION, "state": tree}
    atomic_write_bytes(folder / "state.json", (json.dumps(record) + "\n").encode())


def has_state(folder: Path) -> bool:
    return (folder / "state.json").is_file() and (folder / "state.safetensors").is_file()


def load_state(folder: Path) -> dict[str, Any]:
    """Read a state written by :func:`save_state`; one-line error when unusable."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        record = json.loads((folder / "state.json").read_text(encoding="utf-8"))
        tensors = load_file(str(folder / "state.safetensors"))
    except FileNotFoundError:
        raise UsageError(f"{folder}: no training state to resume from") from None
    except (OSError, ValueError, SafetensorError) as exc:
        raise UsageError(f"{folder}: unreadable training state ({str(exc).splitlines()[0]})") from None
    if record.get("format") != STATE_FORMAT or record.get("version") != STATE_VERSION:
        raise UsageError(f"{folder}/state.json: not an oldphoto training state")
    return join(record["state"], tensors)
