"""Scratch mode's non-local attention: the fused kernel against a naive N×N implementation.

The published block builds the N×N correlation matrix of the latent's N positions,
softmaxes it, masks damaged keys and renormalises. ``oldphoto.networks.nonlocal_block``
gets the same numbers from one fused scaled-dot-product-attention call with an extra value
channel. This script times both at growing latent sizes (and the bf16 path with its heads
at the odd size 513 and padded to 528) (the naive one only while its two
N×N fp32 matrices fit in ``--max-gib``), checks they agree, and names the attention kernel
PyTorch actually ran — on the CPU the fused path must be the flash kernel, not the math
fallback (which a value head size different from q/k's silently selects)::

    python benchmarks/attention.py --sides 64 96 128 160 192 --max-gib 8
"""

from __future__ import annotations

import argparse
import time

from standin import ROOT  # noqa: F401  (puts the repository on sys.path)


def naive(theta, phi, g, v):
    """The published computation with an explicit N×N matrix (B×N×C features, B×N×1 clear mask)."""
    import torch

    a = torch.softmax(theta @ phi.transpose(1, 2), dim=-1)
    a.mul_(v.transpose(1, 2))
    a.div_(a.sum(dim=-1, keepdim=True).clamp_min_(1e-12))
    return a @ g


def fused(theta, phi, g, v, multiple: int | None = None):
    """oldphoto's path: heads with one extra channel, one fused attention call, one division.

    ``multiple`` overrides the head-size padding a Restorer would choose for this dtype and device.
    """
    import torch

    from oldphoto.networks.nonlocal_block import attention_heads, renormalised_attention
    from oldphoto.speed import head_multiple

    def nchw(t):
        b, n, c = t.shape
        return t.transpose(1, 2).reshape(b, c, n, 1)

    precision = "fp32" if theta.dtype == torch.float32 else "bf16"
    m = head_multiple(theta.device, precision) if multiple is None else multiple
    heads = [attention_heads(nchw(theta), multiple=m), attention_heads(nchw(phi), multiple=m),
             attention_heads(nchw(g), v.to(g.dtype), multiple=m)]
    return renormalised_attention(*heads, theta.shape[-1])


def kernel_names(fn, *args) -> list[str]:
    """Names of the scaled-dot-product-attention kernels that ``fn(*args)`` dispatches to."""
    import torch

    # Operator names are recorded on the CPU side for every device.
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn(*args)
    return sorted({e.name for e in prof.events() if "attention" in e.name and e.name.startswith("aten::_")})


def timed(fn, *args, repeat: int = 2) -> tuple[float, object]:
    """Best of ``repeat`` wall-clock seconds after one warm-up call, and the last result."""
    import torch

    def call():
        result = fn(*args)
        if result.is_cuda:
            torch.cuda.synchronize()
        return result

    out = call()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        out = call()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sides", nargs="+", type=int, default=[64, 96, 128, 160, 192],
                        help="latent side lengths (the photo is 4x larger per side)")
    parser.add_argument("--channels", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max-gib", type=float, default=8.0, help="memory the naive N×N matrices may take")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"C={args.channels}, {args.device}, {args.threads} threads, torch {torch.__version__}")
    print(f"{'latent':>9} {'N':>6} {'photo MP':>8} {'naive s':>8} {'naive GiB':>9} {'fused s':>8} "
          f"{'bf16 513':>8} {'bf16 528':>8} {'max diff':>9}  kernels (fp32; bf16)")
    with torch.inference_mode():
        for side in args.sides:
            n = side * side
            theta, phi, g = (torch.randn(1, n, args.channels, device=args.device) * 0.05 for _ in range(3))
            v = (torch.rand(1, n, 1, device=args.device) > 0.1).float()
            t_fused, y_fused = timed(fused, theta, phi, g, v)
            low = [t.bfloat16() for t in (theta, phi, g)]
            t_odd, _ = timed(fused, *low, v, 1)
            t_bf16, _ = timed(fused, *low, v)
            kernels = "; ".join(", ".join(kernel_names(fused, *ts, v)) for ts in ((theta, phi, g), low))
            need = 2 * n * n * 4 / 2**30
            if need <= args.max_gib:
                t_naive, y_naive = timed(naive, theta, phi, g, v, repeat=1)
                diff = float((y_naive - y_fused).abs().max())
                naive_txt, diff_txt = f"{t_naive:8.2f}", f"{diff:9.1e}"
            else:
                naive_txt, diff_txt = f"{'(skip)':>8}", f"{'-':>9}"
            print(f"{side:>4}x{side:<4} {n:>6} {16 * n / 1e6:8.2f} {naive_txt} {need:9.1f} {t_fused:8.2f} "
                  f"{t_odd:8.2f} {t_bf16:8.2f} {diff_txt}  {kernels}", flush=True)


if __name__ == "__main__":
    main()
