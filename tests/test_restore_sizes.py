"""The default behaviour keeps every photo's exact size; published rounds as the published code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from oldphoto import Restorer
from oldphoto.errors import ImageError


@pytest.fixture(scope="module")
def restorer(tiny_weights: Path) -> Restorer:
    return Restorer(tiny_weights, device="cpu", precision="fp32")


def _photo(w: int, h: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


@pytest.mark.parametrize("mode", ["quality", "scratch", "hr"])
@pytest.mark.parametrize("size", [(157, 213), (8, 8), (31, 9), (64, 64)])
def test_default_keeps_exact_size(restorer: Restorer, mode: str, size: tuple[int, int]) -> None:
    mask = Image.new("L", size, 0)
    mask.paste(255, (0, 0, max(1, size[0] // 3), size[1]))
    out = restorer.restore(_photo(*size), mask if mode != "quality" else None, mode=mode)
    assert out.size == size and out.mode == "RGB"


@pytest.mark.parametrize(("mode", "expected"), [("quality", (156, 212)), ("scratch", (160, 208)), ("hr", (160, 208))])
def test_published_rounds_like_the_published_code(restorer: Restorer, mode: str, expected: tuple[int, int]) -> None:
    mask = Image.new("L", (157, 213), 0) if mode != "quality" else None
    out = restorer.restore(_photo(157, 213), mask, mode=mode, postprocess="published")
    assert out.size == expected


@pytest.mark.parametrize("mode", ["quality", "scratch"])
def test_output_is_the_decoder_output_stretched_over_the_photo_alone(restorer: Restorer, mode: str) -> None:
    """The published min–max stretch of what the decoder painted, its range taken over the photo's pixels.

    41×53 is padded to 44×56 for the networks; the padding is cropped before the stretch, so
    the stretch is recomputed here, independently, from the decoder's own output.
    """
    import torch

    photo = _photo(41, 53, seed=5)
    mask = Image.new("L", photo.size, 0)
    mask.paste(255, (5, 0, 12, 53))
    _, bundle = restorer.model(mode)
    painted: list[torch.Tensor] = []
    hook = bundle["decoder"].register_forward_hook(lambda module, args, output: painted.append(output.detach().clone()))
    try:
        out = np.asarray(restorer.restore(photo, mask if mode == "scratch" else None, mode=mode)).astype(np.int64)
    finally:
        hook.remove()
    (decoded,) = painted  # small enough for one untiled pass
    assert decoded.shape[-2:] == (56, 44)
    y = (decoded[0, :, :53, :41].double().permute(1, 2, 0).numpy() + 1) / 2
    expected = np.floor((y - y.min()) / (y.max() - y.min()) * 255 + 0.5)
    assert out.shape == expected.shape
    assert np.abs(out - expected).max() <= 1  # float32 in the pipeline, float64 here
    assert (out == expected).mean() > 0.99


def test_one_pixel_photo_is_a_clear_error(restorer: Restorer) -> None:
    with pytest.raises(ImageError, match=r"photo is 1×1 pixels; at least 8×8 is needed"):
        restorer.restore(_photo(1, 1))


def test_grey_photo_stays_grey(restorer: Restorer) -> None:
    out = restorer.restore(_photo(33, 21).convert("L"))
    assert out.mode == "L" and out.size == (33, 21)


def test_auto_mode_follows_the_mask(restorer: Restorer) -> None:
    clean = Image.new("L", (48, 40), 0)
    damaged = clean.copy()
    damaged.paste(255, (10, 10, 20, 30))
    assert restorer.restore_detailed(_photo(48, 40), clean).mode == "quality"
    assert restorer.restore_detailed(_photo(48, 40), damaged).mode == "scratch"


def test_scratch_mode_without_a_mask_detects_one(restorer: Restorer) -> None:
    result = restorer.restore_detailed(_photo(64, 48), mode="scratch")
    assert result.mode == "scratch"
    assert result.detected_mask is not None and result.detected_mask.size == (64, 48)


def test_option_values_are_checked_where_they_enter(restorer: Restorer) -> None:
    """The same checks (and words) as the CLI's: each is written once, in ``oldphoto.options``."""
    from oldphoto.errors import UsageError

    with pytest.raises(UsageError, match="unknown mode 'best'"):
        restorer.restore(_photo(16, 16), mode="best")
    with pytest.raises(UsageError, match="unknown postprocess 'exact'"):
        restorer.restore(_photo(16, 16), postprocess="exact")
    with pytest.raises(UsageError, match="a mask needs a mode that repairs damage"):
        restorer.restore(_photo(16, 16), Image.new("L", (16, 16), 255), mode="quality")
    with pytest.raises(UsageError, match="face strength must be between 0 and 1, got 1.5"):
        Restorer(restorer.weights, device="cpu", face_strength=1.5)
