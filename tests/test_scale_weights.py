"""A detector card's ``scale_weights``: a weighted mean of its working scales, equal weights as before.

The weights let the finer working sizes, which see small specks, count more than the coarse one
that keeps wide cracks whole, without dropping it; a card without the key averages as it always did.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from oldphoto.detection import _as_read, _at_scale, damage_probability, detect_probability, input_channels
from oldphoto.errors import WeightsError


@pytest.fixture(scope="module")
def detector() -> tuple[dict, torch.nn.Module]:
    """The bundled card and its UNet, loaded as restore loads them (fp32 on the CPU)."""
    from oldphoto import Restorer

    meta, bundle = Restorer(model="lite", device="cpu", precision="fp32").model("detector")
    return meta["pipeline"], bundle["unet"]


def _plain(card: dict) -> dict:
    """The card at 192, 320 and 416 px with equal weights and no fine pass."""
    return {k: v for k, v in card.items() if not k.startswith(("fine", "stroke", "scale"))} | {"short_side": [192, 320, 416]}


def _photo(photos: Path) -> Image.Image:
    return Image.open(photos / "scratched_c.png").convert("RGB").resize((240, 320))


def test_equal_weights_are_the_plain_mean(detector, photos: Path) -> None:
    card, unet = detector
    plain = _plain(card)
    with torch.inference_mode():
        before = damage_probability(unet, _photo(photos), plain, "default")
        after = damage_probability(unet, _photo(photos), plain | {"scale_weights": [1, 1, 1]}, "default")
    assert torch.equal(before, after)


def test_weights_give_the_weighted_mean(detector, photos: Path) -> None:
    card, unet = detector
    plain = _plain(card)
    photo = _photo(photos)
    with torch.inference_mode():
        got = damage_probability(unet, photo, plain | {"scale_weights": [1, 2, 2]}, "default")
        x, size = _as_read(photo, plain, "default", input_channels(unet))
        each = [detect_probability(unet, _at_scale(x, size, s), size, "bilinear") for s in (192, 320, 416)]
    expected = (each[0] + 2 * each[1] + 2 * each[2]) / 5
    assert got.shape == (1, 1, 320, 240)
    assert torch.allclose(got, expected, atol=1e-6)
    assert not torch.allclose(got, sum(each) / 3, atol=1e-3)  # the weights really move it


@pytest.mark.parametrize("weights", [[1, 2], [1, -1, 1], [0, 0, 0]])
def test_weights_that_do_not_fit_the_scales_are_a_card_error(detector, photos: Path, weights: list[float]) -> None:
    card, unet = detector
    plain = _plain(card)
    with pytest.raises(WeightsError, match="scale_weights"):
        damage_probability(unet, _photo(photos), plain | {"scale_weights": weights}, "default")


def test_a_fine_pass_that_is_also_a_mean_scale_runs_once(detector, photos: Path) -> None:
    from oldphoto.detection import fine_score

    card, unet = detector
    weighted = card | {"short_side": [192, 384, 512], "scale_weights": [1, 2, 2], "fine_side": 512, "fine_threshold": 0.7}
    photo = _photo(photos)
    calls = []
    hook = unet.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[-2:]))
    try:
        with torch.inference_mode():
            got = damage_probability(unet, photo, weighted, "default")
    finally:
        hook.remove()
    assert len(calls) == 3  # 192, 384 and 512: the fine pass reuses the mean's 512
    with torch.inference_mode():
        x, size = _as_read(photo, weighted, "default", input_channels(unet))
        each = [detect_probability(unet, _at_scale(x, size, s), size, "bilinear") for s in (192, 384, 512)]
        fine = torch.sigmoid(unet(_at_scale(x, size, 512)).float())
    mean = (each[0] + 2 * each[1] + 2 * each[2]) / 5
    resized = torch.nn.functional.interpolate(fine_score(fine, weighted), size=(320, 240), mode="bilinear", align_corners=False)
    assert torch.allclose(got, torch.maximum(mean, resized), atol=1e-6)
