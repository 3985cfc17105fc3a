"""Draw the README's before/after sheet: real old photos restored by the bundled lite model.

Every photo goes through the real :class:`oldphoto.Restorer` (``model="lite"``, fp32), the
path ``oldphoto restore --model lite`` takes: quality mode, or for the folders given with
``--scratched`` scratch mode with lite's own detector (``--detect-scratches``). Each row shows
the photo as read and its restoration at the same height, labelled, then the same detail of
both at twice its pixel size: the square of the photo where the restoration changed it most,
since grain and fine damage vanish when a whole photo is shrunk to a row. Run from the
repository root::

    python docs/make_lite_sheet.py ../shared/photos/old --scratched ../shared/photos/scratched --out docs/images/lite-sheet.jpg
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from oldphoto import Restorer  # noqa: E402
from oldphoto.imageio import READABLE_EXTENSIONS  # noqa: E402
from oldphoto.inputs import load_photo  # noqa: E402

ROW = 260
ZOOM = 2
GAP = 8
LABEL = 22


def most_changed(before: Image.Image, after: Image.Image, side: int) -> tuple[int, int, int, int]:
    """The ``side``-pixel square (on a half-side grid) where ``after`` differs most from ``before``."""
    diff = np.abs(np.asarray(before, np.float32) - np.asarray(after.resize(before.size), np.float32)).sum(axis=2)
    side = min(side, before.width, before.height)
    step = max(1, side // 2)
    best, at = -1.0, (0, 0)
    for y in range(0, before.height - side + 1, step):
        for x in range(0, before.width - side + 1, step):
            score = float(diff[y : y + side, x : x + side].mean())
            if score > best:
                best, at = score, (x, y)
    return (at[0], at[1], at[0] + side, at[1] + side)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="*", type=Path, help="photos restored in quality mode")
    ap.add_argument("--scratched", nargs="*", type=Path, default=[], help="photos restored in scratch mode with detected masks")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--columns", type=int, default=1, help="before/after pairs per row of the sheet")
    ap.add_argument("--weights", type=Path, default=None, help="a lite folder to draw instead of the bundled one (a candidate)")
    args = ap.parse_args()
    if args.weights is not None:
        restorer = Restorer(args.weights, device="cpu", precision="fp32")
    else:
        restorer = Restorer(model="lite", device="cpu", precision="fp32")
    pairs = []
    for folder, scratched in [*((f, False) for f in args.folders), *((f, True) for f in args.scratched)]:
        for f in sorted(p for p in folder.iterdir() if p.suffix.lower() in READABLE_EXTENSIONS):
            photo = load_photo(f).image.convert("RGB")
            t0 = time.perf_counter()
            result = restorer.restore_detailed(photo, mode="scratch" if scratched else "quality", detect_scratches=scratched)
            print(f"{folder.name}/{f.name}: {photo.width}×{photo.height} in {time.perf_counter() - t0:.2f} s ({result.model}, {result.mode})")
            label = "after (lite, scratch, detected)" if scratched else "after (lite)"
            pairs.append((f"{folder.name}/{f.name}", photo, result.image.convert("RGB"), label))
    tiles = []
    for name, before, after, label in pairs:
        w = round(before.width * ROW / before.height)
        box = most_changed(before, after, ROW // ZOOM)
        tile = Image.new("RGB", (2 * w + 2 * ROW + 3 * GAP, ROW + LABEL), "white")
        tile.paste(before.resize((w, ROW), Image.LANCZOS), (0, LABEL))
        tile.paste(after.resize((w, ROW), Image.LANCZOS), (w + GAP, LABEL))
        for k, img in enumerate((before, after)):
            tile.paste(img.crop(box).resize((ROW, ROW), Image.LANCZOS), (2 * w + 2 * GAP + k * (ROW + GAP), LABEL))
        draw = ImageDraw.Draw(tile)
        draw.text((2, 4), f"{name}: before", fill="black")
        draw.text((w + GAP + 2, 4), label, fill="black")
        draw.text((2 * w + 2 * GAP + 2, 4), f"detail at {ZOOM}x: before", fill="black")
        draw.text((2 * w + 3 * GAP + ROW + 2, 4), "after", fill="black")
        tiles.append(tile)
    rows = [tiles[i : i + args.columns] for i in range(0, len(tiles), args.columns)]
    width = max(sum(t.width for t in r) + GAP * (len(r) - 1) for r in rows)
    title = 30
    sheet = Image.new("RGB", (width, title + sum(ROW + LABEL + GAP for _ in rows)), "white")
    ImageDraw.Draw(sheet).text(
        (4, 8), "Real old photos restored by the bundled lite model (oldphoto restore --model lite; fp32, CPU)", fill="black"
    )
    y = title
    for r in rows:
        x = 0
        for t in r:
            sheet.paste(t, (x, y))
            x += t.width + GAP
        y += ROW + LABEL + GAP
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out, quality=85)
    print(f"{args.out}: {sheet.width}×{sheet.height}, {args.out.stat().st_size / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
