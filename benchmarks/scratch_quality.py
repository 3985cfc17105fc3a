"""Scratch restoration on held-out photos: the error on damaged pixels with and without the
scratch branch, with the true mask and with the detector's, and how well the detector finds it.

Each clean photo (default: ``kodak24``, held out from all training) gets the project's
procedural structured damage (``oldphoto.training.damage.Damage``: scratches, wide cracks,
folds, emulsion loss, dust, drawn with their exact mask), seeded from ``--seed`` and the file name, in two sets:

* ``damage`` — the damage alone on the clean photo;
* ``damage+old`` — the published unstructured degradation first (blur, noise, resampling,
  JPEG, each with probability 0.7), then the damage: an old, scratched print.

Methods, all through the real :class:`oldphoto.Restorer` (fp32) where a model is involved:
``input`` (the damaged photo), ``telea`` (OpenCV's Telea inpainting with the true mask, radius
3: the classical baseline that is given the answer to "where"), ``smooth`` (the pull-push fill,
:func:`oldphoto.holefill.fill_holes`, true mask, no network), ``harmonic`` (that fill relaxed to
Laplace's equation, :func:`oldphoto.holefill.fill_harmonic`; the card's ``hole_fill`` says which
one lite's scratch model starts from), ``quality``  (the model's
quality mode: no scratch branch, no mask), ``scratch+mask`` (scratch mode with the true mask)
and ``scratch+detect`` (scratch mode with the model's own detector). Scores are PSNR (dB) on
RGB in [0, 1] over the whole photo, over the damaged pixels only (mask > 0) and over the clear
ones (identical pixels: 100 dB), and the damaged pixels' mean absolute error in 8-bit levels; for the detector, pixel
precision (also counting pixels within 2 px of damage), recall, F1 and IoU of its mask against the true one. Examples::

    python benchmarks/scratch_quality.py --limit 4                  # the bundled lite model
    python benchmarks/scratch_quality.py --weights DIR --json out.json   # scratch.* [+ detector.*, quality.*]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from oldphoto.holefill import fill_harmonic, fill_holes  # noqa: E402
from oldphoto.training import degrade as dg  # noqa: E402
from quality import clean_photos, photo_arguments  # noqa: E402  (the same held-out photos, listed the same way)

SETS = ("damage", "damage+old")
METHODS = ("input", "telea", "smooth", "harmonic", "quality", "scratch+mask", "scratch+detect")


def damaged_photo(clean: np.ndarray, set_name: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The set's damaged version of ``clean`` and its exact mask (uint8, 255 = damaged)."""
    recipe = dg.PUBLISHED if set_name == "damage+old" else replace(dg.PUBLISHED, p_each=0.0)
    photo, mask, _ = dg.degrade_photo(clean, seed, recipe=recipe, damage=dg.Damage(), grey=False)
    return photo, mask


def psnr_on(out: np.ndarray, ref: np.ndarray, where: np.ndarray) -> float:
    """PSNR (dB, peak 255) over the pixels selected by ``where`` (H×W bool), all channels; identical: 100."""
    if not where.any():
        return float("nan")
    err = (out.astype(np.float64) - ref.astype(np.float64))[where]
    mse = float(np.mean(err**2))
    return min(100.0, 10 * np.log10(255.0**2 / mse)) if mse else 100.0


def scores(out: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Whole-photo, damaged-pixel and clear-pixel PSNR, and the damaged pixels' mean abs error (levels)."""
    damaged = mask > 0
    mae = float(np.abs(out.astype(np.float64) - ref.astype(np.float64))[damaged].mean()) if damaged.any() else float("nan")
    return {"psnr": psnr_on(out, ref, np.ones_like(damaged)), "psnr_damaged": psnr_on(out, ref, damaged),
            "psnr_clear": psnr_on(out, ref, ~damaged), "mae_damaged": mae}


def detection_scores(found: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Pixel precision, recall, F1 and IoU of a detected mask against the true one, and the
    share of detected pixels within 2 pixels of true damage (a mask found at 256 pixels on
    the short side and scaled back up is wider than thin strokes, which plain precision counts
    as wrong)."""
    from oldphoto.pipeline import dilate

    f, t = found > 0, truth > 0
    near = dilate(torch.from_numpy(t).float()[None, None], 2)[0, 0].numpy() > 0
    tp, fp, fn = float((f & t).sum()), float((f & ~t).sum()), float((~f & t).sum())
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0,
            "iou": tp / (tp + fp + fn) if tp + fp + fn else 0.0,
            "precision_2px": float((f & near).sum()) / f.sum() if f.any() else 0.0}


def telea(photo: np.ndarray, mask: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.inpaint(photo, (mask > 0).astype(np.uint8) * 255, 3, cv2.INPAINT_TELEA)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    photo_arguments(ap, SETS)
    ap.add_argument("--weights", type=Path, default=None, help="folder with scratch.* (+ detector.*, quality.*); default: bundled lite")
    ap.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS), help="which methods to score (default: all)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None, help="also write every score here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from oldphoto import Restorer

    files = clean_photos(args.folder, args.limit)
    r = Restorer(args.weights, device="cpu", precision="fp32", model="auto" if args.weights else "lite")
    needs = {"quality": "quality", "scratch+detect": "detector"}  # methods that need a model besides scratch.*
    methods = [m for m in args.methods if m not in needs or args.weights is None or (args.weights / f"{needs[m]}.json").is_file()]

    def run(method: str, photo: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        img = Image.fromarray(photo)
        if method == "input":
            return photo, None
        if method == "telea":
            return telea(photo, mask), None
        if method == "smooth":
            return fill_holes(photo, mask), None
        if method == "harmonic":
            return fill_harmonic(photo, mask), None
        if method == "quality":
            return np.asarray(r.restore(img, mode="quality").convert("RGB")), None
        if method == "scratch+mask":
            return np.asarray(r.restore(img, Image.fromarray(mask), mode="scratch").convert("RGB")), None
        res = r.restore_detailed(img, mode="scratch", detect_scratches=True)
        return np.asarray(res.image.convert("RGB")), np.asarray(res.detected_mask)

    rows: dict[str, dict[str, list[dict[str, float]]]] = {s: {m: [] for m in methods} for s in args.sets}
    detect: dict[str, list[dict[str, float]]] = {s: [] for s in args.sets}
    seconds = {m: 0.0 for m in methods}
    damaged_fraction: dict[str, list[float]] = {s: [] for s in args.sets}
    for k, set_name in enumerate(args.sets):
        for f in files:
            clean = np.asarray(Image.open(f).convert("RGB"))
            photo, mask = damaged_photo(clean, set_name, zlib.crc32(f"{args.seed}:{set_name}:{f.name}".encode()))
            damaged_fraction[set_name].append(float((mask > 0).mean()))
            for m in methods:
                t0 = time.perf_counter()
                out, found = run(m, photo, mask)
                seconds[m] += time.perf_counter() - t0
                rows[set_name][m].append(scores(out, clean, mask))
                if found is not None:
                    detect[set_name].append(detection_scores(found, mask))
        print(f"  {set_name}: done ({k + 1}/{len(args.sets)})", file=sys.stderr)

    def mean(items: list[dict[str, float]]) -> dict[str, float]:
        return {key: float(np.nanmean([i[key] for i in items])) for key in items[0]} if items else {}

    table = {s: {m: mean(rows[s][m]) for m in methods} for s in args.sets}
    det = {s: mean(detect[s]) for s in args.sets if detect[s]}
    print(f"{len(files)} photos from {args.folder} (seed {args.seed}); model: {r.choose().name}; mean over photos")
    print("| set | method | PSNR whole | PSNR damaged | PSNR clear | damaged MAE (levels) |")
    print("|---|---|---|---|---|---|")
    for s in args.sets:
        for m in methods:
            v = table[s][m]
            print(f"| {s} | {m} | {v['psnr']:.2f} | {v['psnr_damaged']:.2f} | {v['psnr_clear']:.2f} | {v['mae_damaged']:.1f} |")
    for s, v in det.items():
        print(f"detector on {s}: precision {v['precision']:.3f} (within 2 px {v['precision_2px']:.3f}), recall {v['recall']:.3f}, "
              f"F1 {v['f1']:.3f}, IoU {v['iou']:.3f}; "
              f"damaged area {100 * np.mean(damaged_fraction[s]):.2f} %")
    n = len(files) * len(args.sets)
    print("seconds per photo: " + ", ".join(f"{m} {seconds[m] / n:.3f}" for m in methods))
    if args.json:
        args.json.write_text(json.dumps({"files": [f.name for f in files], "seed": args.seed, "model": r.choose().name,
                                         "mean": table, "detector": det, "seconds_per_photo": {m: seconds[m] / n for m in methods},
                                         "damaged_fraction": {s: float(np.mean(v)) for s, v in damaged_fraction.items()}}, indent=1))


if __name__ == "__main__":
    main()
