"""Seconds per megapixel of each restoration mode, per precision and device.

Runs the real :class:`oldphoto.Restorer` (pre-processing, networks, post-processing) on
full-size stand-in weights (see ``standin.py``) and prints one line per mode, size and
precision. Examples::

    python benchmarks/speed.py                                   # quality, 1024x768, fp32 + bf16, CPU
    python benchmarks/speed.py --modes quality scratch hr --precisions auto
    python benchmarks/speed.py --device cuda --sizes 1024x1024 4096x4096 --precisions bf16 fp16

Each timing is the best of ``--repeat`` runs after one warm-up run on the same size (the
first run at a size pays one-off allocator and kernel-selection costs).

Shared machines drift by 5–10% from minute to minute, so each line also says how far the
run is from what the machine can do right then: ``TFLOP`` counts the convolutions of the
restore (hooks on every conv during the warm-up), ``peak`` is the measured throughput of
one 512→512 3×3 convolution at that size's latent (the mapping's workhorse, in the layout
and precision the Restorer uses), and ``floor`` = TFLOP / peak is the time of the
convolutions alone at that rate. ``s/MP ÷ floor`` is the overhead of everything else.
On CUDA, ``GPU GiB`` is the peak device memory of the timed restores.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

from standin import DEFAULT_CACHE, sample_photo, scratch_mask, standin_weights


def parse_size(text: str) -> tuple[int, int]:
    """``1024x768`` to (1024, 768)."""
    w, _, h = text.lower().partition("x")
    return int(w), int(h or w)


def describe_machine(device: str) -> str:
    """One line naming the CPU or GPU the numbers come from."""
    import torch

    from oldphoto.devices import cpu_has_fast_bf16

    if device.startswith("cuda"):
        return f"GPU {torch.cuda.get_device_name()} · torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return (f"CPU {cpu} · {torch.get_num_threads()} threads · fast bf16: {cpu_has_fast_bf16()} · "
            f"torch {torch.__version__}")


def time_restore(restorer, mode: str, size: tuple[int, int], repeat: int) -> tuple[float, float]:
    """Best wall-clock seconds of restoring (or, for ``detect``, detecting) a ``size`` photo, after a
    warm-up that also counts the convolutions' TFLOP; returns (seconds, TFLOP)."""
    photo = sample_photo(*size)
    mask = scratch_mask(*size) if mode in ("scratch", "hr") else None

    def run() -> None:
        if mode == "detect":
            restorer.detect(photo)
        else:
            restorer.restore(photo, mask, mode=mode)

    tflop = conv_tflop(restorer, mode, run)
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        if restorer.device.type == "cuda":
            import torch

            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best, tflop


def conv_tflop(restorer, mode: str, run) -> float:
    """Tera-FLOPs of every convolution in one ``run()`` of ``mode``'s networks (2 per multiply-add)."""
    import torch

    total = [0.0]

    def count(module, inputs, output) -> None:
        k = module.kernel_size[0] * module.kernel_size[1]
        if isinstance(module, torch.nn.ConvTranspose2d):
            total[0] += 2.0 * inputs[0].numel() * module.out_channels * k / module.groups
        else:
            total[0] += 2.0 * output.numel() * module.in_channels * k / module.groups

    _, bundle = restorer.model(mode if mode != "detect" else "detector")
    hooks = [m.register_forward_hook(count) for m in bundle.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    try:
        run()
    finally:
        for hook in hooks:
            hook.remove()
    return total[0] / 1e12


def peak_tflops(restorer, size: tuple[int, int]) -> float:
    """Measured TFLOP/s of one 512→512 3×3 convolution on ``size``'s latent, as the Restorer would run it."""
    import torch

    from oldphoto.devices import autocast, channels_last

    device, precision = restorer.device, restorer.precision
    conv = torch.nn.Conv2d(512, 512, 3).eval().requires_grad_(False).to(device)
    h, w = size[1] // 4, size[0] // 4
    x = torch.randn(1, 512, h + 2, w + 2, device=device)
    if channels_last(device, precision, conv):
        conv, x = conv.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    if precision != "fp32":
        x = x.to(torch.bfloat16 if precision == "bf16" else torch.float16)
    best = float("inf")
    with torch.inference_mode(), autocast(device, precision):
        for _ in range(3):
            start = time.perf_counter()
            conv(x)
            if device.type == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - start)
    return 2.0 * 9 * 512 * 512 * h * w / best / 1e12


def load_average() -> str:
    """The 1-minute load average (other processes skew CPU timings), or '?' where unknown."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except (AttributeError, OSError):
        return "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", nargs="+", default=["quality"], choices=["quality", "scratch", "hr", "detect"],
                        help="restoration modes; 'detect' times scratch detection alone")
    parser.add_argument("--sizes", nargs="+", default=[(1024, 768)], type=parse_size, help="WIDTHxHEIGHT")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["auto", "fp32", "bf16", "fp16"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--weights", type=str, default=None, help="oldphoto weights folder (default: stand-ins)")
    parser.add_argument("--cache", type=str, default=str(DEFAULT_CACHE), help="where stand-in weights are kept")
    args = parser.parse_args()

    from pathlib import Path

    import torch

    from oldphoto import Restorer

    torch.set_num_threads(args.threads)
    models = [m if m != "detect" else "detector" for m in args.modes]
    weights = Path(args.weights) if args.weights else standin_weights(models, Path(args.cache))
    print(describe_machine(args.device))
    print(f"{'mode':8} {'size':>11} {'MP':>6} {'precision':>9} {'seconds':>8} {'s/MP':>7} {'TFLOP':>6} "
          f"{'peak':>6} {'floor':>6} {'÷floor':>6} {'load':>5} {'GPU GiB':>7}")
    for mode in args.modes:
        for precision in args.precisions:
            restorer = Restorer(weights, device=args.device, precision=precision)
            restorer.model(mode if mode != "detect" else "detector")
            for size in args.sizes:
                mp = size[0] * size[1] / 1e6
                cuda = restorer.device.type == "cuda"
                if cuda:
                    torch.cuda.reset_peak_memory_stats()
                seconds, tflop = time_restore(restorer, mode, size, args.repeat)
                gpu = f"{torch.cuda.max_memory_allocated() / 2**30:7.2f}" if cuda else f"{'-':>7}"
                peak = peak_tflops(restorer, size)
                floor = tflop / peak
                label = precision if precision != "auto" else f"auto={restorer.precision}"
                print(f"{mode:8} {size[0]:>5}x{size[1]:<5} {mp:6.2f} {label:>9} {seconds:8.2f} {seconds / mp:7.2f} "
                      f"{tflop:6.2f} {peak:6.2f} {floor / mp:6.2f} {seconds / floor:6.2f} {load_average():>5} {gpu}", flush=True)
            del restorer


if __name__ == "__main__":
    main()
