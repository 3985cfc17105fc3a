"""Our checkpoint format: ``NAME.safetensors`` plus ``NAME.json`` in one folder.

The JSON says how to rebuild every network in the bundle (architecture name and config),
the pipeline settings of the mode, and where the weights came from (published file names and
their sha256). It is written after the safetensors file and records that file's sha256, so a
folder with a JSON always has complete weights beside it and ``weights verify`` can re-hash.
Only safetensors are read at run time: no pickle is ever loaded here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from oldphoto.errors import WeightsError
from oldphoto.fsutil import atomic_path, atomic_write_bytes, sha256_file

FORMAT = "oldphoto-checkpoint"
FORMAT_VERSION = 1


def checkpoint_paths(folder: Path | str, name: str) -> tuple[Path, Path]:
    """Return the (weights, metadata) paths of model ``name`` in ``folder``."""
    folder = Path(folder)
    return folder / f"{name}.safetensors", folder / f"{name}.json"


def has_checkpoint(folder: Path | str, name: str) -> bool:
    """True when both files of model ``name`` are present in ``folder``."""
    weights, meta = checkpoint_paths(folder, name)
    return weights.is_file() and meta.is_file()


def save_checkpoint(folder: Path | str, name: str, tensors: dict[str, Any], meta: dict[str, Any]) -> Path:
    """Write ``tensors`` (name -> torch tensor) and ``meta`` atomically; return the JSON path.

    ``meta`` must hold ``networks`` ({net: {"arch", "config"}}) and may hold ``pipeline`` and
    ``sources``; format fields and the safetensors sha256 are added here.
    """
    from safetensors.torch import save_file

    weights_path, meta_path = checkpoint_paths(folder, name)
    contiguous = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    with atomic_path(weights_path) as tmp:
        save_file(contiguous, str(tmp), metadata={"format": FORMAT})  # one key: the header stays byte-reproducible
    record = {"format": FORMAT, "version": FORMAT_VERSION, "name": name, **meta}
    record["weights_file"] = weights_path.name
    record["weights_sha256"] = sha256_file(weights_path)
    atomic_write_bytes(meta_path, (json.dumps(record, indent=2) + "\n").encode())
    return meta_path


def read_meta(folder: Path | str, name: str) -> dict[str, Any]:
    """Read and check the JSON of model ``name``; raise WeightsError naming the file if unusable."""
    _, meta_path = checkpoint_paths(folder, name)
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WeightsError(f"{meta_path}: no such checkpoint metadata") from None
    except (OSError, ValueError) as exc:
        raise WeightsError(f"{meta_path}: unreadable checkpoint metadata ({exc})") from None
    if meta.get("format") != FORMAT or meta.get("version") != FORMAT_VERSION:
        raise WeightsError(f"{meta_path}: not an oldphoto checkpoint (format {meta.get('format')!r})")
    if not isinstance(meta.get("networks"), dict):
        raise WeightsError(f"{meta_path}: checkpoint metadata lacks 'networks'")
    return meta


def load_checkpoint(folder: Path | str, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return ``(meta, tensors)`` of model ``name`` from ``folder`` (tensors on the CPU)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    meta = read_meta(folder, name)
    weights_path, _ = checkpoint_paths(folder, name)
    try:
        tensors = load_file(str(weights_path))
    except FileNotFoundError:
        raise WeightsError(f"{weights_path}: weights file missing beside its metadata") from None
    except (SafetensorError, OSError) as exc:
        raise WeightsError(f"{weights_path}: unreadable safetensors file ({exc})") from None
    return meta, tensors


def verify_checkpoint(folder: Path | str, name: str) -> bool:
    """Re-hash the weights file and compare with the sha256 its metadata recorded."""
    meta = read_meta(folder, name)
    weights_path, _ = checkpoint_paths(folder, name)
    if not weights_path.is_file():
        return False
    return sha256_file(weights_path) == meta.get("weights_sha256")
