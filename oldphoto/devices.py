"""Choosing the device, numeric precision and weight layout a Restorer runs on.

Precision policy (measured, see ``benchmarks/README.md``): on a CPU with native bf16
arithmetic (AMX or AVX512-BF16) ``auto`` picks bf16, about seven times faster than fp32
there and within the documented error of it; everywhere else ``auto`` picks fp32. ``auto``
never picks a precision the device lacks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from oldphoto.errors import UsageError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
#: 8-bit output error of bf16 against fp32 that the tests hold the bf16 path to (mean
#: absolute difference in levels; the measured value on real photos is in benchmarks/README.md).
BF16_MEAN_ERROR_LEVELS = 1.0


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


def _cpuinfo_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as f:
            line = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return set()
    return set(line.partition(":")[2].split())


def cpu_has_fast_bf16() -> bool:
    """True when the CPU has native bf16 arithmetic (AMX tiles or AVX512-BF16) for oneDNN.

    Without it, bf16 convolutions are emulated and slower than fp32, so this decides whether
    ``auto`` may pick bf16 on the CPU.
    """
    if not torch.backends.mkldnn.is_available():
        return False
    for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        check = getattr(torch.cpu, probe, None)
        if check is not None and check():
            return True
    try:
        if torch.backends.cpu.get_cpu_capability() in ("AVX512_BF16", "AMX"):
            return True
    except AttributeError:
        pass
    return bool({"amx_bf16", "avx512_bf16"} & _cpuinfo_flags())


def select_precision(spec: str, device: torch.device) -> str:
    """Resolve ``auto|fp32|bf16|fp16`` for ``device``; ``auto`` never picks what the device lacks.

    ``auto`` is bf16 on a CPU with fast bf16 and fp32 elsewhere. On CUDA it stays fp32 until
    the bf16 error has been measured on a GPU (ask for ``bf16`` or ``fp16`` explicitly).
    """
    spec = (spec or "auto").strip().lower()
    if spec not in PRECISIONS:
        raise UsageError(f"unknown precision {spec!r} (use {', '.join(PRECISIONS)})")
    if spec == "auto":
        return "bf16" if device.type == "cpu" and cpu_has_fast_bf16() else "fp32"
    if spec == "fp16" and device.type == "cpu":
        raise UsageError("fp16 is not supported on the CPU; use bf16 or fp32")
    if spec == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UsageError("this GPU has no bf16 support; use fp16 or fp32")
    return spec


def memory_format(device: torch.device, precision: str) -> torch.memory_format:
    """The weight and feature layout for ``device`` and ``precision``.

    Channels-last everywhere (oneDNN's bf16 AMX kernels and cuDNN's tensor cores want it),
    except fp32 on the CPU: there NCHW is as fast and reproduces the published numbers bit
    for bit, while channels-last changes the convolutions' summation order enough to move
    scratch mode's sharp attention by ~3e-4, beyond the parity tolerance.
    """
    if device.type == "cpu" and precision == "fp32":
        return torch.contiguous_format
    return torch.channels_last


def place(module: nn.Module, device: torch.device, precision: str) -> nn.Module:
    """Put ``module`` in inference state on ``device`` with its weights laid out once, for good.

    Weights stay float32 (autocast casts them per call, which costs well under 1% of a
    restore); only their layout is chosen here, so no per-call re-layout happens.
    """
    module.eval().requires_grad_(False)
    return module.to(device=device, memory_format=memory_format(device, precision))


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """Mixed precision for the networks: convolutions and attention in ``precision``.

    Under CPU autocast every op here runs in bf16 (instance/group norm and attention
    included), but their kernels accumulate statistics, softmax and sums in fp32; the
    measured output error is within ``BF16_MEAN_ERROR_LEVELS`` of fp32 without forcing
    anything back to fp32. The non-local block divides by the attention mass in fp32.
    """
    if precision == "fp32":
        yield
        return
    with torch.autocast(device_type=device.type, dtype=_DTYPES[precision]):
        yield
