"""A card's ``pipeline.ensemble``: the restoration averaged over flips of the photo (lite quality).

Two views are the restoration of the photo and the mirrored restoration of the mirrored photo,
summed in integers and halved with rounding, byte for byte; four views add upside down and both.
The gain on a noisy photo is asserted in dB with room for any CPU's rounding.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from oldphoto.weights.choice import lite_folder
from tests.test_model_choice import CLEAN, _psnr


def _lite_copy(tmp_path: Path, name: str, **pipeline: object) -> Path:
    """The bundled lite folder with its quality card's pipeline changed (None removes a key)."""
    folder = tmp_path / name
    shutil.copytree(lite_folder(), folder)
    card = json.loads((folder / "quality.json").read_text())
    for key, value in pipeline.items():
        if value is None:
            card["pipeline"].pop(key, None)
        else:
            card["pipeline"][key] = value
    (folder / "quality.json").write_text(json.dumps(card))
    return folder


def _noisy_crop() -> tuple[np.ndarray, np.ndarray]:
    clean = np.asarray(Image.open(CLEAN / "crop.png").convert("RGB"))
    noise = np.random.default_rng(25).normal(0, 25, clean.shape)
    return clean, np.clip(np.rint(clean + noise), 0, 255).astype(np.uint8)


def _restore(folder: Path, pixels: np.ndarray, **kw: object) -> np.ndarray:
    from oldphoto import Restorer

    torch.set_num_threads(2)
    r = Restorer(folder, device="cpu", precision="fp32", **kw)
    return np.asarray(r.restore(Image.fromarray(pixels), mode="quality").convert("RGB"))


def test_two_views_are_the_photo_and_its_mirror_averaged(tmp_path: Path) -> None:
    _, noisy = _noisy_crop()
    one = _lite_copy(tmp_path, "one", levels=None, ensemble=None)  # the levels step runs on the average: left out here
    two = _lite_copy(tmp_path, "two", levels=None, ensemble=2)
    a = _restore(one, noisy).astype(np.uint16)
    b = _restore(one, np.ascontiguousarray(noisy[:, ::-1]))[:, ::-1].astype(np.uint16)
    expected = ((a + b + 1) // 2).astype(np.uint8)
    assert np.array_equal(_restore(two, noisy), expected)


def test_four_views_restore_a_noisy_photo_better_and_report_progress_once(tmp_path: Path) -> None:
    clean, noisy = _noisy_crop()
    four = _lite_copy(tmp_path, "four", ensemble=4)
    single = _lite_copy(tmp_path, "single", ensemble=None)
    reports: list[tuple[int, int]] = []
    from oldphoto import Restorer

    torch.set_num_threads(2)
    r = Restorer(four, device="cpu", precision="fp32")
    out = np.asarray(r.restore_detailed(Image.fromarray(noisy), mode="quality", progress=lambda d, t: reports.append((d, t))).image)
    gain = _psnr(out, clean) - _psnr(_restore(single, noisy), clean)
    # σ 25 on this crop, Intel Xeon (AMX), fp32: 28.88 dB with one view, 29.06 with two, 29.14 with four
    # (+0.26); a CPU moves these by far less than 0.01 dB.
    assert gain >= 0.1, gain
    assert reports and reports[-1][0] == reports[-1][1] and len({t for _, t in reports}) == 1
    assert all(d1 <= d2 for (d1, _), (d2, _) in zip(reports, reports[1:]))


def test_the_bundled_quality_card_averages_two_views_and_the_published_cards_none() -> None:
    from oldphoto.weights.cards import load_card

    assert json.loads((lite_folder() / "quality.json").read_text())["pipeline"]["ensemble"] == 2
    assert "ensemble" not in json.loads((lite_folder() / "scratch.json").read_text())["pipeline"]
    assert "ensemble" not in load_card("quality").get("pipeline", {})


def test_a_bad_ensemble_is_a_one_line_error(tmp_path: Path) -> None:
    from oldphoto.errors import WeightsError

    _, noisy = _noisy_crop()
    with pytest.raises(WeightsError, match="pipeline.ensemble is 3; it must be 1, 2 or 4"):
        _restore(_lite_copy(tmp_path, "three", ensemble=3), noisy)
