"""Restoration quality on held-out photos: PSNR/SSIM of the degraded input, classical
denoisers and any trained model, per degradation type, at fixed seeds.

Two families of test sets are made from clean photos (default: ``kodak24``, held out from
all training, see ``shared/datasets/README.md``):

* **project** — the training degradation of ``oldphoto.training.degrade`` (the published
  v2 recipe), one family at a time with its published parameter ranges (``blur``: kernel
  3/5/7, σ U(1,5); ``noise``: Gaussian or speckle σ U(5,50)/255 or salt-and-pepper;
  ``resample``: bicubic down to U[w/2,w]×U[h/2,h] and back nearest/bilinear; ``jpeg``:
  quality U[40,100]), and ``all``: the four in a random order, each applied (p = 1, not the
  training's 0.7, so no photo of the set is left clean). No grey conversion, no fading.
* **standard** — a fixed recipe that is not ours, as image-restoration papers use:
  ``std-noise`` Gaussian σ = 25/255, ``std-blur`` Gaussian σ = 1.5 (11-tap), ``std-jpeg``
  quality 20, and ``std-all``: blur, then noise, then JPEG. ``std-noise`` is the σ = 25
  colour Gaussian denoising benchmark of the literature (CBM3D 31.81 dB, DnCNN 32.14 dB,
  FFDNet 32.13 dB on Kodak24 as published).
* **other** — ``fade``: a print faded toward its paper with uneven dyes and light
  (:func:`oldphoto.training.degrade.fade_print`: lifted blacks, dull whites, a sepia, green,
  neutral or magenta tint, exposure falling off by up to 12 %); ``mild``: JPEG quality 90
  alone, a nearly clean photo that a restorer must not make worse.

Every photo's degradation is seeded from ``--seed``, the set and the file name, so runs
are comparable across machines and commits.

Classical baselines (fixed parameters, not tuned per photo or per set): median 3×3,
bilateral (d 9, σ colour 40, σ space 5) and OpenCV's fast non-local means for colour
images (h 10, h colour 10, 7×7 template, 21×21 search). They come from OpenCV
(``opencv-python-headless``), and BM3D (the ``bm3d`` package, colour CBM3D given the true
noise σ, so only on the Gaussian sets ``std-noise``; elsewhere it has no σ to be given):
one well-maintained wheel with all three in C++, no SciPy
(scikit-image would need SciPy and its non-local means is several times slower; non-local
means is already the slow one here, ~3 s per 0.25 MP photo on one loaded thread).
Install the optional extra: ``pip install -e '.[bench]'``. The table's ``best classical``
is the best of the three per set (chosen after the fact, so it flatters the baselines).

Models go through the real :class:`oldphoto.Restorer` (``--weights DIR``, repeatable;
``--mode``, default ``quality``), so a residual card, padding and post-processing are the
ones users get. Scores are :mod:`oldphoto.training.metrics` PSNR (dB) and SSIM on RGB in
[0, 1], over the whole photo. Examples::

    python benchmarks/quality.py --limit 6                          # input + baselines
    python benchmarks/quality.py --weights runs/lite --limit 6      # + a trained model
    python benchmarks/quality.py --folder my_clean_photos --sets std-noise std-all --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from oldphoto.imageio import READABLE_EXTENSIONS  # noqa: E402
from oldphoto.training import degrade as dg  # noqa: E402
from oldphoto.training.metrics import psnr, ssim  # noqa: E402

KODAK = ROOT.parent / "shared" / "datasets" / "clean" / "kodak24"
PROJECT_SETS = ("blur", "noise", "resample", "jpeg", "all")
STANDARD_SETS = ("std-noise", "std-blur", "std-jpeg", "std-all")
OTHER_SETS = ("fade", "mild")
SETS = PROJECT_SETS + STANDARD_SETS + OTHER_SETS
#: The sets whose noise is Gaussian with a known σ (of 255), for BM3D.
KNOWN_SIGMA = {"std-noise": 25.0}


def _family(img: np.ndarray, family: str, rng: np.random.Generator, r: dg.Recipe = dg.PUBLISHED) -> np.ndarray:
    """One family of the published recipe, parameters drawn from its published ranges."""
    if family == "blur":
        return dg.gaussian_blur(img, int(rng.choice(r.blur_sizes)), float(rng.uniform(*r.blur_sigma)))
    if family == "noise":
        kind = ("gaussian", "speckle", "salt_pepper")[int(rng.integers(3))]
        if kind == "salt_pepper":
            return dg.salt_and_pepper(img, float(rng.uniform(*r.sp_amount)), float(rng.uniform(*r.sp_salt)), rng)
        sigma = float(rng.uniform(*r.noise_sigma)) / 255.0
        return (dg.gaussian_noise if kind == "gaussian" else dg.speckle_noise)(img, sigma, rng)
    if family == "resample":
        h, w = img.shape[:2]
        size = (max(1, int(rng.integers(w // 2, w + 1))), max(1, int(rng.integers(h // 2, h + 1))))
        return dg.resample(img, size, ("nearest", "bilinear")[int(rng.integers(2))])
    if family == "jpeg":
        return dg.jpeg(img, int(rng.integers(r.jpeg_quality[0], r.jpeg_quality[1] + 1)))
    raise ValueError(family)


def degrade_set(img: np.ndarray, name: str, seed: int) -> np.ndarray:
    """The degraded photo of test set ``name`` (see the module docstring), fixed by ``seed``."""
    rng = np.random.default_rng(seed)
    if name in dg.FAMILIES:
        return _family(img, name, rng)
    if name == "all":
        for i in rng.permutation(len(dg.FAMILIES)):
            img = _family(img, dg.FAMILIES[int(i)], rng)
        return img
    if name == "fade":
        return dg.fade_print(img, rng)
    if name == "mild":
        return dg.jpeg(img, 90)
    if name in ("std-blur", "std-all"):
        img = dg.gaussian_blur(img, 11, 1.5)
    if name in ("std-noise", "std-all"):
        img = dg.gaussian_noise(img, 25 / 255, rng)
    if name in ("std-jpeg", "std-all"):
        img = dg.jpeg(img, 20)
    if name not in STANDARD_SETS:
        raise ValueError(f"unknown set {name!r} (choose {', '.join(SETS)})")
    return img


def baselines() -> dict[str, object]:
    """The classical methods, each ``(degraded, set name) -> restored`` (None: not applicable to that set)."""
    from oldphoto.tone import undo_fading

    methods: dict[str, object] = {"levels": lambda img, set_name: undo_fading(img)}
    try:
        import cv2
    except ImportError:
        print("note: OpenCV missing (pip install -e '.[bench]'): classical filters skipped", file=sys.stderr)
        return methods
    cv2.setNumThreads(1)

    def rgb(f):  # OpenCV works in BGR; the colour NLM weights channels differently
        return lambda img, set_name: f(np.ascontiguousarray(img[..., ::-1]))[..., ::-1]

    methods |= {
        "median 3x3": rgb(lambda b: cv2.medianBlur(b, 3)),
        "bilateral": rgb(lambda b: cv2.bilateralFilter(b, 9, 40, 5)),
        "nl-means": rgb(lambda b: cv2.fastNlMeansDenoisingColored(b, None, 10, 10, 7, 21)),
    }
    try:
        import bm3d
    except ImportError:
        print("note: bm3d missing (pip install -e '.[bench]'): BM3D skipped", file=sys.stderr)
        return methods

    def cbm3d(img: np.ndarray, set_name: str) -> np.ndarray | None:
        sigma = KNOWN_SIGMA.get(set_name)
        if sigma is None:
            return None
        out = bm3d.bm3d_rgb(img.astype(np.float64) / 255.0, sigma / 255.0)
        return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)

    methods["bm3d (true σ)"] = cbm3d
    return methods


def classical(methods) -> list[str]:
    """The classical filters among ``methods`` (not the degraded input, not a ``model …``)."""
    return [m for m in methods if m != "input" and not m.startswith("model ")]


def best_classical(vals: dict) -> str:
    """The classical filter with the highest PSNR in ``vals`` ({method: (psnr, ssim)}); methods not run there are ignored."""
    return max(classical(vals), key=lambda m: -np.inf if np.isnan(vals[m][0]) else vals[m][0])


def overall(mean: dict) -> dict:
    """``project overall`` / ``standard overall``: per method, the (PSNR, SSIM) mean over the group's sets in ``mean``."""
    out = {}
    for label, group in (("project overall", PROJECT_SETS), ("standard overall", STANDARD_SETS)):
        chosen = [s for s in group if s in mean]
        if chosen:
            out[label] = {m: tuple(float(v) for v in np.mean([mean[s][m] for s in chosen], axis=0)) for m in mean[chosen[0]]}
    return out


def photo_arguments(ap: argparse.ArgumentParser, sets: tuple[str, ...]) -> None:
    """The options that pick the photos and their degradation: --folder, --limit, --sets, --seed."""
    ap.add_argument("--folder", type=Path, default=KODAK, help="clean photos (default: shared kodak24)")
    ap.add_argument("--limit", type=int, default=None, help="first N photos only (sorted by name)")
    ap.add_argument("--sets", nargs="+", default=list(sets), choices=sets)
    ap.add_argument("--seed", type=int, default=0)


def clean_photos(folder: Path, limit: int | None) -> list[Path]:
    """The photos of ``folder`` sorted by name (the first ``limit``); exits when there are none."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in READABLE_EXTENSIONS)
    files = files[:limit] if limit else files
    if not files:
        sys.exit(f"{folder}: no photos")
    return files


def _t(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(img, copy=True)).permute(2, 0, 1).double() / 255.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    photo_arguments(ap, SETS)
    ap.add_argument("--weights", type=Path, action="append", default=[], help="a model folder (repeatable)")
    ap.add_argument("--mode", default="quality")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="where the models run (cpu, cuda)")
    ap.add_argument("--no-baselines", action="store_true")
    ap.add_argument("--json", type=Path, default=None, help="also write every score here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    files = clean_photos(args.folder, args.limit)
    methods: dict[str, object] = {"input": lambda img, set_name: img}
    if not args.no_baselines:
        methods.update(baselines())
    if args.weights:
        from oldphoto import Restorer

        for w in args.weights:
            r = Restorer(w, device=args.device, precision="fp32")
            methods[f"model {w.name}"] = lambda img, set_name, r=r: np.asarray(
                r.restore(Image.fromarray(img), mode=args.mode).convert("RGB")
            )
    scores: dict[str, dict[str, list[tuple[float, float]]]] = {s: {m: [] for m in methods} for s in args.sets}
    seconds = {m: 0.0 for m in methods}
    counts = {m: 0 for m in methods}
    for k, set_name in enumerate(args.sets):
        for f in files:
            clean = np.asarray(Image.open(f).convert("RGB"))
            seed = zlib.crc32(f"{args.seed}:{set_name}:{f.name}".encode())
            degraded = degrade_set(clean, set_name, seed)
            ref = _t(clean)
            for m, fn in methods.items():
                t0 = time.perf_counter()
                out = fn(degraded, set_name)
                if out is None:
                    continue
                seconds[m] += time.perf_counter() - t0
                counts[m] += 1
                out = _t(out)
                scores[set_name][m].append((psnr(out, ref), ssim(out, ref)))
        print(f"  {set_name}: done ({k + 1}/{len(args.sets)})", file=sys.stderr)

    names = list(methods)
    filters = classical(names)
    mean = {s: {m: tuple(np.mean(scores[s][m], axis=0)) if scores[s][m] else (np.nan, np.nan) for m in names} for s in args.sets}
    print(f"{len(files)} photos from {args.folder} (seed {args.seed}); PSNR dB / SSIM, mean over photos")
    header = ["set"] + names + (["best classical"] if filters else [])
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))

    def row(label: str, vals: dict[str, tuple[float, float]]) -> None:
        cells = ["—" if np.isnan(vals[m][0]) else f"{vals[m][0]:.2f} / {vals[m][1]:.3f}" for m in names]
        if filters:
            best = best_classical(vals)
            cells.append(f"{vals[best][0]:.2f} ({best})")
        print("| " + " | ".join([label] + cells) + " |")

    for label, vals in [*mean.items(), *overall(mean).items()]:
        row(label, vals)
    per_photo = {m: seconds[m] / max(counts[m], 1) for m in names}
    print("seconds per photo: " + ", ".join(f"{m} {per_photo[m]:.3f}" for m in names))
    if args.json:
        args.json.write_text(json.dumps({"files": [f.name for f in files], "seed": args.seed, "scores": scores,
                                         "mean": mean, "seconds_per_photo": per_photo}, indent=1))


if __name__ == "__main__":
    main()
