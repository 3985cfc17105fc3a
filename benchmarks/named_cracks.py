"""How much of each named crack on the real scratched prints a detector's mask covers.

Issue 25 names the cracks a detector must find on ``shared/photos/scratched``: ``a``'s big
crack on the right (and the curved branch below it), ``b``'s forehead crack, its vertical
crack (whose faint lower half no detector has found) and the crack by its right temple. Their
centre lines were traced by hand on 5–6× zooms (``CRACKS``, pixel coordinates of the photo as
stored); a point of a centre line counts as covered when the mask (as ``restore
--detect-scratches`` makes it: the card's threshold and dilation) has a pixel within 2 px.
The mask's share of the whole photo is printed beside it, since marking everything would
cover every crack. Examples::

    python benchmarks/named_cracks.py                      # the bundled lite detector
    python benchmarks/named_cracks.py --weights runs/det27 --thresholds 0.3 0.4 0.5
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from scratch_detection import card_cut, detector_arguments, load_detector, masks_at  # noqa: E402

PHOTOS = ROOT.parent / "shared" / "photos" / "scratched"
TOLERANCE = 2

# photo -> crack -> centre line (x, y) in the photo's pixels, traced by hand.
CRACKS: dict[str, dict[str, list[tuple[int, int]]]] = {
    "a.png": {
        "big crack, right": [(398, 266), (408, 262), (416, 258), (424, 254), (432, 250), (440, 246), (448, 241)],
        "its curved branch": [(430, 260), (433, 270), (434, 282), (438, 292)],
        "lower curved crack": [(466, 314), (468, 324), (466, 333), (458, 340), (448, 348)],
    },
    "b.png": {
        "forehead crack": [(0, 115), (16, 111), (32, 107), (48, 104), (64, 101), (80, 97), (96, 94), (104, 91), (112, 89)],
        "vertical crack, upper half": [(44, 106), (44, 128), (45, 150), (45, 180)],
        "vertical crack, lower half": [(45, 180), (45, 200), (46, 230), (46, 255)],
        "right temple crack": [(160, 77), (176, 74), (192, 71), (208, 67), (224, 63)],
    },
}


def centre_points(line: list[tuple[int, int]]) -> np.ndarray:
    """The polyline sampled every pixel of its length, as integer (x, y) rows."""
    pts = []
    for (x0, y0), (x1, y1) in zip(line, line[1:]):
        n = max(abs(x1 - x0), abs(y1 - y0), 1)
        t = np.arange(n) / n
        pts.append(np.stack([x0 + t * (x1 - x0), y0 + t * (y1 - y0)], 1))
    pts.append(np.array([line[-1]], dtype=float))
    return np.rint(np.concatenate(pts)).astype(int)


def coverage(mask: np.ndarray, line: list[tuple[int, int]], tolerance: int = TOLERANCE) -> float:
    """Share of the centre line's points with a masked pixel within ``tolerance`` px."""
    from oldphoto.pipeline import dilate

    near = dilate(torch.from_numpy(mask).float()[None, None], tolerance)[0, 0].numpy() > 0
    pts = centre_points(line)
    h, w = mask.shape
    pts[:, 0] = pts[:, 0].clip(0, w - 1)
    pts[:, 1] = pts[:, 1].clip(0, h - 1)
    return float(near[pts[:, 1], pts[:, 0]].mean())


def detector_masks(weights: Path | None, folder: Path, cuts: list[tuple[float, int]] | None,
                   names: list[str] | None = None) -> dict[str, dict[tuple[float, int], np.ndarray]]:
    """Each named photo's (or ``names``') detection mask at each (threshold, dilation); default: the card's cut."""
    meta, bundle = load_detector(weights)
    cuts = cuts or [card_cut(meta)]
    return {name: masks_at(np.asarray(Image.open(folder / name).convert("RGB")), meta, bundle, cuts) for name in names or list(CRACKS)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--folder", type=Path, default=PHOTOS, help="the scratched photos (default: shared/photos/scratched)")
    detector_arguments(ap)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cuts = None
    if args.thresholds or args.dilations:
        cuts = [(t, g) for t in (args.thresholds or [0.4]) for g in (args.dilations or [1])]
    masks = detector_masks(args.weights, args.folder, cuts)
    where = str(args.weights) if args.weights else "bundled lite"
    print(f"detector {where}; share of each hand-traced crack centre line with a mask pixel within {TOLERANCE} px")
    print("| photo | crack | threshold | dilation | covered | mask area |")
    print("|---|---|---|---|---|---|")
    scores: dict[str, dict[str, float]] = {}
    for name, lines in CRACKS.items():
        for (t, g), m in masks[name].items():
            for crack, line in lines.items():
                c = coverage(m, line)
                scores.setdefault(f"{t:g}/{g}", {})[f"{name} {crack}"] = c
                print(f"| {name} | {crack} | {t:g} | {g} | {100 * c:.0f} % | {100 * m.mean():.2f} % |")
    if args.json:
        args.json.write_text(json.dumps({"weights": where, "tolerance_px": TOLERANCE, "scores": scores}, indent=1))


if __name__ == "__main__":
    main()
