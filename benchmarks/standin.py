"""Full-size stand-in checkpoints and photos for the benchmarks (no trained weights needed).

The published networks' shapes with the parity data's deterministic weight rule: the output
is not a restoration, but every convolution, norm and attention runs at its real size, so
timings are those of the real networks. Imported once through the real importer and kept
in a cache folder, so later runs load them in well under a second.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_CACHE = Path.home() / ".cache" / "oldphoto-bench" / "weights"
PHOTOS = ROOT.parent / "shared" / "photos"


def standin_weights(models: list[str], cache: Path = DEFAULT_CACHE) -> Path:
    """Return a folder holding ``models`` (restoration modes and/or ``detector``), importing any missing."""
    import tempfile

    from oldphoto.weights.checkpoint import has_checkpoint
    from oldphoto.weights.importer import import_official
    from tests.support.parity import write_published_detector, write_published_mode

    missing = [m for m in models if not has_checkpoint(cache, m)]
    for name in missing:
        # Each mode's parity manifest has its own weights for the shared VAE files, so each
        # mode is written and imported from its own published tree.
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp)
            if name == "detector":
                write_published_detector(src)
            else:
                write_published_mode(name, src)
            import_official(src, cache, models=[name])
    return cache


def sample_photo(width: int, height: int, *, seed: int = 0) -> Image.Image:
    """A real old photo resized to ``width``×``height`` when one is at hand, else smooth noise."""
    candidates = sorted((PHOTOS / "old").glob("*.png")) or sorted((ROOT / "tests" / "data" / "photos").glob("*.png"))
    if candidates:
        return Image.open(candidates[0]).convert("RGB").resize((width, height), Image.Resampling.BICUBIC)
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(1, height // 16), max(1, width // 16), 3), dtype=np.uint8)
    return Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC)


def scratch_mask(width: int, height: int) -> Image.Image:
    """A damage mask with a few thin vertical and diagonal scratches (about 2% of the area)."""
    from PIL import ImageDraw

    mask = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(mask)
    line = max(2, min(width, height) // 200)
    draw.line([(width // 3, 0), (width // 3 + width // 20, height)], fill=255, width=line)
    draw.line([(0, height // 2), (width, height // 2 + height // 10)], fill=255, width=line)
    draw.line([(2 * width // 3, 0), (width // 2, height)], fill=255, width=line)
    return mask
