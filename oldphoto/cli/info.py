"""``oldphoto info``: what this installation can run on and which weights it can find.

The first thing to paste into a bug report: versions, the devices torch sees, and where
weights are looked for, so "it is slow" or "weights not found" can be answered at a glance.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any, Optional

import typer


def _devices() -> list[tuple[str, str]]:
    """``(device, description)`` for the CPU, every CUDA GPU and Apple's MPS, as torch sees them."""
    import torch

    from oldphoto.devices import cpu_has_fast_bf16

    cpu = platform.processor() or platform.machine()
    bf16 = ", fast bf16" if cpu_has_fast_bf16() else ""
    found = [("cpu", f"{cpu} ({torch.get_num_threads()} threads{bf16})")]
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            found.append(
                (f"cuda:{index}", f"{props.name}, {props.total_memory / 2**30:.1f} GiB, compute {props.major}.{props.minor}")
            )
    else:
        found.append(("cuda", "not available" + ("" if torch.version.cuda else " (this torch build has no CUDA)")))
    mps = getattr(torch.backends, "mps", None)
    found.append(("mps", "available" if mps is not None and mps.is_available() else "not available"))
    return found


def _weights_status(weights: Optional[Path]) -> tuple[list[dict[str, Any]], list[str]]:
    """One row per model (name, present, where, path, verified) and the places that were searched."""
    from oldphoto.weights.cache import cache_root, weights_status

    searched = [f"--weights {weights}"] if weights is not None else []
    return list(weights_status(weights_dir=weights)), [*searched, f"download cache {cache_root()}"]


def info(
    weights: Optional[Path] = typer.Option(None, "--weights", help="Check this folder of checkpoints instead of the download cache."),
) -> None:
    """Show versions, the devices found, and where weights are looked for.

    \b
    Example:
      oldphoto info --weights ./weights-local
    """
    import torch
    from rich.console import Console
    from rich.table import Table

    from oldphoto import __version__
    from oldphoto.weights.choice import lite_status

    out = Console(highlight=False, soft_wrap=True)
    out.print(f"oldphoto {__version__}")
    out.print(f"python   {platform.python_version()} ({platform.system()} {platform.machine()})")
    out.print(f"torch    {torch.__version__}" + (f" (CUDA {torch.version.cuda})" if torch.version.cuda else ""))
    devices = Table(title="devices", title_justify="left")
    devices.add_column("device")
    devices.add_column("details", overflow="fold")
    for name, details in _devices():
        devices.add_row(name, details)
    out.print(devices)
    rows, searched = _weights_status(weights)
    out.print("weights are looked for in: " + "; then ".join(searched) + "; else (--model auto) the bundled lite model")
    table = Table(title="weights", title_justify="left")
    table.add_column("model")
    table.add_column("present")
    table.add_column("where")
    table.add_column("verified")
    table.add_column("path", overflow="fold")
    for row in rows:
        verified = {True: "yes", False: "NO"}.get(row.get("verified"), "-")
        path = row.get("path") or row.get("location") or "-"
        table.add_row(str(row["name"]), "yes" if row.get("present") else "no", str(row.get("where") or "-"), verified, str(path))
    lite = lite_status()
    table.add_row("lite", "yes" if lite["present"] else "no", "package", "yes" if lite["verified"] else "NO", lite["path"])
    out.print(table)
