"""Choosing the device and numeric precision a Restorer runs on."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from oldphoto.errors import UsageError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def select_device(spec: str = "auto") -> torch.device:
    """Resolve ``auto|cpu|cuda[:N]|mps`` to a device that exists, or raise UsageError."""
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise UsageError(f"unknown device {spec!r} (use auto, cpu, cuda, cuda:N or mps)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"device {spec!r} asked for, but no CUDA GPU is available to torch")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"device {spec!r} asked for, but only {torch.cuda.device_count()} CUDA device(s) exist")
    elif device.type == "mps":
        if getattr(torch.backends, "mps", None) is None or not torch.backends.mps.is_available():
            raise UsageError("device 'mps' asked for, but Apple's MPS backend is not available")
    elif device.type != "cpu":
        raise UsageError(f"unsupported device {spec!r} (use auto, cpu, cuda, cuda:N or mps)")
    return device


def cpu_has_fast_bf16() -> bool:
    """True when the CPU has native bf16 matrix units (AMX or AVX512-BF16) that oneDNN uses."""
    try:
        caps = torch.backends.cpu.get_cpu_capability()
    except AttributeError:
        return False
    if caps in ("AVX512_BF16", "AMX"):
        return True
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return False
    return " amx_bf16" in flags or " avx512_bf16" in flags


def select_precision(spec: str, device: torch.device) -> str:
    """Resolve ``auto|fp32|bf16|fp16`` for ``device``; ``auto`` never picks what the device lacks."""
    spec = (spec or "auto").strip().lower()
    if spec not in PRECISIONS:
        raise UsageError(f"unknown precision {spec!r} (use {', '.join(PRECISIONS)})")
    if spec == "auto":
        return "fp32"
    if spec == "fp16" and device.type == "cpu":
        raise UsageError("fp16 is not supported on the CPU; use bf16 or fp32")
    if spec == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UsageError("this GPU has no bf16 support; use fp16 or fp32")
    return spec


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """Mixed precision for convolutions and matmuls; normalisations stay in fp32 (autocast's policy)."""
    if precision == "fp32":
        yield
        return
    with torch.autocast(device_type=device.type, dtype=_DTYPES[precision]):
        yield
