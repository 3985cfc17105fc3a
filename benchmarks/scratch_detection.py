"""How well a scratch detector finds each kind of damage on held-out photos.

Each clean photo (default: ``kodak24``, held out from all training) gets one kind of the
project's procedural damage at a time (``oldphoto.training.damage``: thin scratches, wide
cracks, folds, emulsion loss, dust), and then all kinds mixed as training draws them, each
with its exact mask; seeded from ``--seed``, the kind and the file name. With ``--old`` every
photo is first degraded by the published unstructured recipe (blur, noise, resampling, JPEG),
as a scratched old print would be. The detector runs exactly as ``restore
--detect-scratches`` runs it (fp32, the card's pipeline), once per photo; its probability is
then cut at each ``--thresholds`` value and grown by each ``--dilations`` value (default: the
card's threshold and dilation, as ``restore`` uses them).

Scores pool the pixels of all photos of a set, with 2 px tolerance both ways as in issue 25:
precision = share of detected pixels within 2 px of true damage; recall = share of damaged
pixels within 2 px of a detected one; ``recall exact`` counts only detected damaged pixels.
A mask found at 256 px on the short side and scaled back up is never pixel-exact on a thin
stroke, which the tolerance forgives. Examples::

    python benchmarks/scratch_detection.py                        # bundled lite detector
    python benchmarks/scratch_detection.py --weights runs/det25 --thresholds 0.3 0.4 0.5
"""

from __future__ import annotations

import argparse
import json
import sys
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from oldphoto.training import degrade as dg  # noqa: E402
from oldphoto.training.damage import DAMAGE_KINDS, Damage  # noqa: E402
from quality import KODAK, clean_photos  # noqa: E402

SETS = (*DAMAGE_KINDS, "mixed")
TOLERANCE = 2  # pixels


def damage_for(set_name: str) -> Damage:
    """One kind alone (always drawn), or all kinds with training's probabilities."""
    return Damage() if set_name == "mixed" else Damage(kinds=(set_name,), p_kind={set_name: 1.0})


def damaged_photo(clean: np.ndarray, set_name: str, seed: int, old: bool) -> tuple[np.ndarray, np.ndarray]:
    """The set's damaged version of ``clean`` and its exact mask (uint8, 255 = damaged)."""
    recipe = dg.PUBLISHED if old else replace(dg.PUBLISHED, p_each=0.0)
    photo, mask, _ = dg.degrade_photo(clean, seed, recipe=recipe, damage=damage_for(set_name), grey=False)
    return photo, mask


def near(mask: np.ndarray) -> np.ndarray:
    """Pixels within ``TOLERANCE`` px (3×3 square steps) of ``mask``."""
    from oldphoto.pipeline import dilate

    return dilate(torch.from_numpy(mask).float()[None, None], TOLERANCE)[0, 0].numpy() > 0


def counts(found: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """[detected, detected near truth, damaged, damaged near a detection, damaged and detected]."""
    return np.array([found.sum(), (found & near(truth)).sum(), truth.sum(), (truth & near(found)).sum(), (found & truth).sum()], dtype=np.int64)


def rates(c: np.ndarray) -> dict[str, float]:
    """Precision and recall (2 px tolerance), exact recall, and F1 from pooled ``counts``."""
    p = c[1] / c[0] if c[0] else 0.0
    r = c[3] / c[2] if c[2] else 0.0
    return {"precision": float(p), "recall": float(r), "recall_exact": float(c[4] / c[2]) if c[2] else 0.0,
            "f1": float(2 * p * r / (p + r)) if p + r else 0.0, "damaged_fraction": 0.0}


def detector_arguments(ap: argparse.ArgumentParser) -> None:
    """The options every detector benchmark takes: which detector, where to cut it, threads, JSON out."""
    ap.add_argument("--weights", type=Path, default=None, help="folder with detector.* (default: the bundled lite detector)")
    ap.add_argument("--thresholds", type=float, nargs="+", default=None, help="cut the probability here (default: the card's)")
    ap.add_argument("--dilations", type=int, nargs="+", default=None, help="grow the mask by this many pixels (default: the card's)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None, help="also write every score here")


def load_detector(weights: Path | None) -> tuple[dict, dict]:
    """The detector's card and networks, fp32 on the CPU: ``weights``' or the bundled lite one."""
    from oldphoto import Restorer

    return Restorer(weights, device="cpu", precision="fp32", model="auto" if weights else "lite").model("detector")


def card_cut(meta: dict) -> tuple[float, int]:
    """The card's own (threshold, dilation)."""
    from oldphoto.detection import card_threshold

    return card_threshold(meta["pipeline"]), int(meta["pipeline"].get("dilation", 0))


def masks_at(photo: np.ndarray, meta: dict, bundle: dict, cuts: list[tuple[float, int]]) -> dict[tuple[float, int], np.ndarray]:
    """Detect once, as ``restore --detect-scratches`` does; the H×W bool mask at each (threshold, dilation)."""
    from oldphoto.detection import damage_probability, mask_from_probability

    with torch.inference_mode():
        prob = damage_probability(bundle["unet"], Image.fromarray(photo), meta["pipeline"], "default")
    return {(t, g): np.asarray(mask_from_probability(prob, {"threshold": t, "dilation": g})) > 0 for t, g in cuts}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--folder", type=Path, default=KODAK, help="clean photos (default: shared kodak24)")
    ap.add_argument("--limit", type=int, default=None, help="first N photos only (sorted by name)")
    ap.add_argument("--sets", nargs="+", default=list(SETS), choices=SETS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--old", action="store_true", help="degrade each photo with the published recipe before the damage")
    detector_arguments(ap)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    meta, bundle = load_detector(args.weights)
    threshold, dilation = card_cut(meta)
    cuts = [(t, g) for t in (args.thresholds or [threshold]) for g in (args.dilations or [dilation])]
    files = clean_photos(args.folder, args.limit)
    totals = {s: {c: np.zeros(5, np.int64) for c in cuts} for s in args.sets}
    area = {s: [] for s in args.sets}
    for set_name in args.sets:
        for f in files:
            clean = np.asarray(Image.open(f).convert("RGB"))
            seed = zlib.crc32(f"{args.seed}:{set_name}:{int(args.old)}:{f.name}".encode())
            photo, mask = damaged_photo(clean, set_name, seed, args.old)
            truth = mask > 0
            area[set_name].append(float(truth.mean()))
            for cut, found in masks_at(photo, meta, bundle, cuts).items():
                totals[set_name][cut] += counts(found, truth)
        print(f"  {set_name}: done", file=sys.stderr)
    marked = {c: [] for c in cuts}  # what it marks on the undamaged photo (old: degraded alone): every pixel is a false hit
    for f in files:
        clean = np.asarray(Image.open(f).convert("RGB"))
        if args.old:
            clean = dg.degrade(clean, np.random.default_rng(zlib.crc32(f"{args.seed}:undamaged:{f.name}".encode())))[0]
        for cut, found in masks_at(clean, meta, bundle, cuts).items():
            marked[cut].append(float(found.mean()))
    scores = {s: {c: {**rates(totals[s][c]), "damaged_fraction": float(np.mean(area[s]))} for c in cuts} for s in args.sets}
    where = Path(args.weights) if args.weights else "bundled lite"
    print(f"detector {where} (card: threshold {threshold:g}, dilation {dilation}); {len(files)} photos from {args.folder}, seed {args.seed}, "
          f"{'old (published degradation) + ' if args.old else ''}one damage kind per set; pooled pixels, {TOLERANCE} px tolerance")
    print("| damage | threshold | dilation | precision | recall | recall exact | F1 | damaged area |")
    print("|---|---|---|---|---|---|---|---|")
    for s in args.sets:
        for t, g in cuts:
            v = scores[s][(t, g)]
            print(f"| {s} | {t:g} | {g} | {v['precision']:.3f} | {v['recall']:.3f} | {v['recall_exact']:.3f} | {v['f1']:.3f} | {100 * v['damaged_fraction']:.2f} % |")
    for t, g in cuts:
        m = np.array(marked[(t, g)])
        print(f"undamaged photos{' (degraded)' if args.old else ''}, threshold {t:g}, dilation {g}: marked {100 * m.mean():.2f} % of a photo "
              f"on average, at most {100 * m.max():.2f} % ({files[int(m.argmax())].name})")
    if args.json:
        args.json.write_text(json.dumps({"files": [f.name for f in files], "seed": args.seed, "old": args.old, "weights": str(where),
                                         "undamaged_marked": {f"{t:g}/{g}": float(np.mean(v)) for (t, g), v in marked.items()},
                                         "tolerance_px": TOLERANCE, "card": {"threshold": threshold, "dilation": dilation},
                                         "scores": {s: {f"{t:g}/{g}": v for (t, g), v in d.items()} for s, d in scores.items()}}, indent=1))


if __name__ == "__main__":
    main()
