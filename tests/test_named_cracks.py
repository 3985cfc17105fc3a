"""Issue 25's named cracks on the real ``scratched/b`` are in the bundled lite detector's mask.

``benchmarks/named_cracks.py`` holds the cracks' centre lines, traced by hand, and scores how
much of each a mask covers (a point counts when a mask pixel lies within 2 px).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from named_cracks import CRACKS, coverage, detector_masks  # noqa: E402

# Measured with the bundled detector (det28, threshold 0.4 + 1 px, the probabilities at 256 and 384
# px resized back bilinearly and averaged), fp32, 2 threads, AMD EPYC Zen 4 (4 Dec 2026): forehead
# crack 81 %, vertical crack's upper half 84 %, its faint lower half 51 %, right temple crack 98 %;
# mask 5.23 % of the photo (nearest resizing: 81 / 85 / 50 / 98 %, 5.38 %). At
# 256 px alone (the card before): 83 / 89 / 22 / 98 %, mask 5.15 %; the detector bundled before det28:
# 58 / 76 / 22 / 95 %, mask 2.49 %, which fails these floors. Another
# CPU's float32 moves the probability by a few 1e-6 (tests/test_lite_scratch.py), so a centre-line
# point only where a mask pixel sits that close to the threshold; storing the weights as float16
# (1e-3) moved the upper half from 96 to 89 %, so the room left here is far more than a CPU takes.
FLOORS = {"forehead crack": 0.75, "vertical crack, upper half": 0.8, "vertical crack, lower half": 0.4, "right temple crack": 0.9}
AREA_CEILING = 0.065


def test_coverage_counts_centre_line_points_within_two_pixels() -> None:
    mask = np.zeros((40, 60), dtype=bool)
    mask[20, 10:50] = True  # a horizontal stroke
    assert coverage(mask, [(10, 20), (49, 20)]) == 1.0
    assert coverage(mask, [(10, 22), (49, 22)]) == 1.0  # 2 px off: still within tolerance
    assert coverage(mask, [(10, 23), (49, 23)]) == 0.0
    assert 0.5 <= coverage(mask, [(30, 20), (69, 20)]) <= 0.6  # about half of it runs past the stroke


def test_the_bundled_detector_finds_the_named_cracks_of_scratched_b(photos: Path, tmp_path: Path) -> None:
    torch.set_num_threads(2)
    (tmp_path / "b.png").symlink_to(photos / "scratched_b.png")
    masks = detector_masks(None, tmp_path, None, names=["b.png"])
    (mask,) = masks["b.png"].values()
    covered = {crack: coverage(mask, line) for crack, line in CRACKS["b.png"].items()}
    for crack, floor in FLOORS.items():
        assert covered[crack] >= floor, (crack, covered)
    assert mask.mean() <= AREA_CEILING  # not by marking everything


def test_the_bundled_card_averages_two_working_scales(photos: Path) -> None:
    from PIL import Image

    from oldphoto import Restorer
    from oldphoto.detection import damage_probability

    torch.set_num_threads(2)
    meta, bundle = Restorer(model="lite", device="cpu", precision="fp32").model("detector")
    assert meta["pipeline"]["short_side"] == [256, 384] and meta["pipeline"]["resize_back"] == "bilinear"
    with Image.open(photos / "scratched_b.png") as im:
        photo = im.convert("RGB").resize((300, 200))
    with torch.inference_mode():
        both = damage_probability(bundle["unet"], photo, meta["pipeline"], "default")
        each = [damage_probability(bundle["unet"], photo, {**meta["pipeline"], "short_side": s}, "default") for s in (256, 384)]
    assert both.shape == (1, 1, 200, 300)
    assert torch.allclose(both, (each[0] + each[1]) / 2, atol=1e-6)
    assert not torch.equal(each[0], each[1])  # the two scales do see different things
