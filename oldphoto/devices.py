"""Choosing the device, numeric precision and weight layout a Restorer runs on.

Precision policy: ``auto`` is fp32, except for a model whose card records a measured bf16
agreement with fp32 (``precision.auto_bf16``: the 8-bit output within 1 level, mean, on real
photos with its own trained weights; for a detector, its masks differing on at most 0.1 % of
the pixels), which runs in bf16 on a CPU with native bf16 (AMX or AVX512-BF16) — see
:func:`model_precision`. So far only the bundled lite quality and scratch models qualify (their
cards' ``precision`` records the measurement; the lite detector's masks differ on 0.2 % of the
pixels, so it stays fp32; ``benchmarks/README.md``). The published weights cannot be
measured here (the stand-ins are chaotic, so they say nothing), so they stay fp32 under
``auto``; :data:`AUTO_BF16_ON_CPU` would make bf16 the ``auto`` choice for every model once
that is measured. ``auto`` never picks a precision the device lacks.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from collections.abc import Iterator

import torch
from torch import nn

from oldphoto.errors import UsageError
from oldphoto.speed import use_fast_kernels

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
#: Let ``auto`` pick bf16 on CPUs with native bf16. Off until the bf16-vs-fp32 error has been
#: measured within 1 level (mean, 8-bit) with the trained weights (``benchmarks/precision.py``).
AUTO_BF16_ON_CPU = False
#: The training stages whose bf16 autocast step measured faster than fp32 on a CPU with native
#: bf16 (``benchmarks/train_precision.py``; ``docs/TRAINING.md``): ``--precision auto`` picks bf16
#: for these there, fp32 for the rest (vae-a: not measured). With AVX512-BF16 and no AMX
#: (measured on an AMD EPYC Zen 4) mapping-scratch gained nothing in one of two runs; with AMX
#: (an Intel Xeon, 2 cores) every measured stage ran 2.1-3.0× faster in bf16.
AUTO_BF16_TRAINING_STAGES: frozenset[str] = frozenset({"mapping", "detector", "vae-b"})
AUTO_BF16_TRAINING_STAGES_AMX: frozenset[str] = AUTO_BF16_TRAINING_STAGES | {"mapping-scratch"}


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
    if cpu_has_amx():
        return True
    check = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    if check is not None and check():
        return True
    try:
        if torch.backends.cpu.get_cpu_capability() in ("AVX512_BF16", "AMX"):
            return True
    except AttributeError:
        pass
    return bool({"amx_bf16", "avx512_bf16"} & _cpuinfo_flags())


def cpu_has_amx() -> bool:
    """True when the CPU has AMX bf16 tiles (Intel Xeon since Sapphire Rapids), where oneDNN's bf16 is fastest."""
    check = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(check()) if check is not None else "amx_bf16" in _cpuinfo_flags()


def auto_bf16_training_stages() -> frozenset[str]:
    """The stages ``train --precision auto`` runs in bf16 on this CPU (measured faster on its kind)."""
    if not cpu_has_fast_bf16():
        return frozenset()
    return AUTO_BF16_TRAINING_STAGES_AMX if cpu_has_amx() else AUTO_BF16_TRAINING_STAGES


def slow_precision_reason(precision: str, device: torch.device) -> str | None:
    """Why ``precision`` will be slow on ``device`` (bf16 asked for on a CPU that only emulates it), else None.

    Measured on a 2-core AMD EPYC with AVX2 only: a bf16 quality restore of a 3-MP scan ran
    for over 11 minutes before it was stopped, against well under a minute in fp32.
    """
    if precision == "bf16" and device.type == "cpu" and not cpu_has_fast_bf16():
        return (
            "bf16 on this CPU is emulated (no AMX or AVX512-BF16): expect it to run many times slower "
            "than fp32 (use --precision fp32 or auto)"
        )
    return None


def parse_precision(spec: str | None) -> str:
    """``spec`` lower-cased (``None``/empty is ``auto``) if it is one of :data:`PRECISIONS`, else UsageError."""
    spec = (spec or "auto").strip().lower()
    if spec not in PRECISIONS:
        raise UsageError(f"unknown precision {spec!r} (use {', '.join(PRECISIONS)})")
    return spec


def select_precision(spec: str, device: torch.device) -> str:
    """Resolve ``auto|fp32|bf16|fp16`` for ``device``; ``auto`` never picks what the device lacks.

    ``auto`` is fp32, or bf16 on a CPU with fast bf16 when :data:`AUTO_BF16_ON_CPU` is set.
    On CUDA it stays fp32 until the reduced-precision error has been measured on a GPU (ask
    for ``bf16`` or ``fp16`` explicitly).
    """
    spec = parse_precision(spec)
    if spec == "auto":
        return "bf16" if AUTO_BF16_ON_CPU and device.type == "cpu" and cpu_has_fast_bf16() else "fp32"
    if spec == "fp16" and device.type == "cpu":
        raise UsageError("fp16 is not supported on the CPU; use bf16 or fp32")
    if spec == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UsageError("this GPU has no bf16 support; use fp16 or fp32")
    return spec


def training_precision(spec: str | None, device: torch.device, stage: str) -> str:
    """The precision training ``stage`` computes in (autocast; weights and optimiser stay fp32).

    ``auto`` is fp16 AMP on CUDA; on a CPU with native bf16 it is bf16 for the stages measured
    faster on that kind of CPU (:func:`auto_bf16_training_stages`) and fp32 for the rest; fp32
    elsewhere. fp16 needs CUDA; bf16 on a GPU without it is refused.
    """
    spec = parse_precision(spec)
    if spec == "auto":
        if device.type == "cuda":
            return "fp16"
        return "bf16" if device.type == "cpu" and stage in auto_bf16_training_stages() else "fp32"
    if spec == "fp16" and device.type != "cuda":
        raise UsageError("fp16 training needs CUDA; use bf16 or fp32 on the CPU")
    if spec == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UsageError("this GPU has no bf16 support; use fp16 or fp32")
    return spec


def dtype(precision: str) -> torch.dtype:
    """The torch dtype of ``fp32``, ``bf16`` or ``fp16``."""
    return _DTYPES[precision]


def model_precision(spec: str, chosen: str, device: torch.device, meta: dict) -> str:
    """The precision one model runs in: ``chosen``, except that ``auto`` on a CPU with native bf16
    picks bf16 for a model whose card records a measured bf16 agreement (``precision.auto_bf16``).

    The bar is the 8-bit output within 1 level (mean) of fp32 on real photos with the model's
    own trained weights (a detector: masks differing on at most 0.1 % of the pixels); the bundled
    lite models have been measured and qualify. The published weights cannot be measured here,
    so they stay fp32 under ``auto``.
    """
    if spec == "auto" and device.type == "cpu" and meta.get("precision", {}).get("auto_bf16") and cpu_has_fast_bf16():
        return "bf16"
    return chosen


def channels_last(device: torch.device, precision: str, network: nn.Module) -> bool:
    """Whether ``network`` should hold its weights (and so compute) channels-last.

    Channels-last everywhere (oneDNN's bf16 AMX kernels and cuDNN's tensor cores want it),
    except fp32 on the CPU: there NCHW convolutions are as fast and reproduce the published
    numbers bit for bit, while channels-last changes the summation order enough to move
    scratch mode's sharp attention by ~3e-4, beyond the parity tolerance. The one exception
    to the exception is a network with transposed convolutions (the decoder): oneDNN's NCHW
    fp32 transposed convolution is five times slower than its channels-last one, and after
    the last attention the small reordering stays within 1e-5 of the published output.
    """
    if device.type != "cpu" or precision != "fp32":
        return True
    return any(isinstance(m, nn.ConvTranspose2d) for m in network.modules())


def place(bundle: nn.ModuleDict, device: torch.device, precision: str) -> nn.ModuleDict:
    """Put a model's networks in inference state on ``device``, their weights laid out once.

    Weights stay float32 (autocast casts them per call, well under 1% of a restore); only
    their layout is chosen here (:func:`channels_last`), so no per-call re-layout happens.
    The faster kernels that compute the same function go in here too
    (:func:`oldphoto.speed.use_fast_kernels`). On the CPU this also makes the allocator keep
    freed feature maps (:func:`keep_freed_memory`).
    """
    bundle.eval().requires_grad_(False).to(device)
    for network in bundle.values():
        if channels_last(device, precision, network):
            network.to(memory_format=torch.channels_last)
    use_fast_kernels(bundle, device, precision)
    if device.type == "cpu":
        keep_freed_memory()
        settle_vector_math()
    return bundle


#: The float ops PyTorch hands to MKL's vector math library (VML) on x86 builds with MKL
#: (``ATen/cpu/vml.h``) that a restore can reach: the decoders' tanh, and exp, log and sqrt.
_VML_OPS = (torch.tanh, torch.exp, torch.log, torch.sqrt)
_vml_settled = False


def settle_vector_math() -> None:
    """Call each MKL vector-math op once on one thread, so every later call computes the same bits.

    Seen on an Intel Xeon with AMX (torch 2.13, MKL 2024.2): the first ``torch.tanh`` of a
    process, split by MKL over two threads, computed one thread's half on a less accurate path
    (up to 5e-5 off: one level in the 8-bit output for up to 1 value in 600), on a thread chosen
    by chance; every later call agreed. So the same photo restored in two processes (the CLI
    and the web app) came out different. A first call too small for MKL to split settles it.
    Process-wide and idempotent; on builds without MKL the calls are merely cheap.
    """
    global _vml_settled
    if _vml_settled:
        return
    probe = torch.full((16,), 0.5)
    for op in _VML_OPS:
        op(probe)
        op(probe.double())
    _vml_settled = True


_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_allocator_tuned = False


def keep_freed_memory() -> bool:
    """Make glibc reuse freed feature maps instead of handing them back to the OS; True if done.

    glibc serves every allocation above 32 MiB with a fresh ``mmap`` and unmaps it on free,
    so each new feature map is page-faulted in and zero-filled by the kernel 4 KiB at a
    time. Measured here that made norms, ReLUs and adds three to five times slower than a
    plain copy and cost more than half of a bf16 restore. Serving large blocks from the heap
    and trimming it only above 1 GiB lets the next map reuse warm pages. Process-wide and
    idempotent; set ``OLDPHOTO_SYSTEM_MALLOC=1`` to leave the allocator alone.
    """
    global _allocator_tuned
    if _allocator_tuned:
        return True
    if os.environ.get("OLDPHOTO_SYSTEM_MALLOC") or not sys.platform.startswith("linux"):
        return False
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc"):
            return False
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, ValueError, AttributeError):
        return False
    _allocator_tuned = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 1 << 30))
    return _allocator_tuned


def allocator_tuned() -> bool:
    """Whether :func:`keep_freed_memory` has tuned this process's allocator."""
    return _allocator_tuned


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """Mixed precision for the networks: convolutions and attention in ``precision``.

    Under CPU autocast every op of these networks runs in bf16 (instance/group norm and the
    fused attention included); their kernels accumulate statistics, softmax and sums in
    fp32 and only round the results. Reflection pads are kept out of autocast's fp32 list
    (see ``networks.blocks.ReflectionPad``). Running everything but the convolutions in
    fp32 was measured to cut the stand-in error only from 7.3 to 6.4 levels, for twice the
    memory traffic: the error comes from rounding the convolutions' inputs, so nothing else
    is kept in fp32.
    """
    if precision == "fp32":
        yield
        return
    with torch.autocast(device_type=device.type, dtype=_DTYPES[precision]):
        yield
