"""``oldphoto.strokes.straight_runs`` keeps thin straight strokes in any direction and drops specks,
blobs and short curls; ``detection.fine_score`` applies it to the fine working size as a card asks."""

from __future__ import annotations

import math

import torch

from oldphoto.detection import fine_score
from oldphoto.strokes import segment_kernels, straight_runs


def _canvas(h: int = 64, w: int = 64) -> torch.Tensor:
    return torch.zeros(1, 1, h, w, dtype=torch.bool)


def _line(mask: torch.Tensor, x0: float, y0: float, degrees: float, length: int) -> torch.Tensor:
    """Mark a one-pixel digital line from (x0, y0) at ``degrees``: ``length`` pixels, one per step
    along its major axis (the start may sit between pixels)."""
    dx, dy = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    step = max(abs(dx), abs(dy))
    for t in range(length):
        mask[0, 0, int(round(y0 + t * dy / step)), int(round(x0 + t * dx / step))] = True
    return mask


def test_each_kernel_is_a_centred_segment_of_the_given_length() -> None:
    kernels = segment_kernels(11, 16)
    assert kernels.shape == (16, 1, 11, 11)
    assert torch.all(kernels.sum(dim=(1, 2, 3)) == 11)  # one pixel per step along the major axis
    assert torch.all(kernels[:, 0, 5, 5] == 1)  # every one passes through the centre
    assert torch.equal(kernels[0, 0, 5], torch.ones(11)) and torch.equal(kernels[8, 0, :, 5], torch.ones(11))
    assert torch.equal(kernels[4, 0], torch.eye(11))  # 45°


def test_a_one_pixel_straight_stroke_survives_at_any_angle_and_offset() -> None:
    for degrees in range(0, 180, 7):
        for offset in (0.0, 0.3, 0.5):
            start = (12 + offset, 20 + offset) if degrees <= 90 else (50 + offset, 20 + offset)
            stroke = _line(_canvas(), *start, degrees, 30)
            kept = straight_runs(stroke, 11)
            assert torch.equal(kept, stroke), (degrees, offset, int(kept.sum()), int(stroke.sum()))


def test_at_the_cards_run_length_only_a_stroke_s_last_pixels_can_fall() -> None:
    # With 17-pixel runs and 16 directions a one-pixel line between two directions can lose a
    # pixel or two at its ends, never one more than 3 pixels in from an end.
    for degrees in range(0, 180, 3):
        for offset in (0.0, 0.25, 0.5, 0.75):
            x0, y0 = (12 + offset, 20 + offset) if degrees <= 90 else (60 + offset, 20 + offset)
            stroke = _line(_canvas(96, 96), x0, y0, degrees, 40)
            kept = straight_runs(stroke, 17)
            dx, dy = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
            step = max(abs(dx), abs(dy))
            for t in range(3, 37):
                assert kept[0, 0, int(round(y0 + t * dy / step)), int(round(x0 + t * dx / step))], (degrees, offset, t)
            assert not (kept & ~stroke).any()


def test_specks_blobs_and_short_strokes_are_dropped() -> None:
    mask = _canvas()
    mask[0, 0, 10, 10] = True  # a speck
    mask[0, 0, 30:36, 30:36] = True  # a 6×6 blob: grown by a pixel, still no run of 11 fits in it
    _line(mask, 45, 10, 30, 8)  # a stroke of 8 pixels, shorter than the run
    assert not straight_runs(mask, 11).any()
    mask[0, 0, 50, 5:25] = True  # a 20-pixel stroke beside them is kept, alone
    kept = straight_runs(mask, 11)
    assert kept.sum() == 20 and kept[0, 0, 50, 5:25].all()


def test_a_blob_as_wide_as_the_run_is_kept_whole() -> None:
    # An opening keeps what a segment fits inside: a 10×10 square, grown by a pixel, holds 11-pixel
    # runs in every direction.
    mask = _canvas()
    mask[0, 0, 20:30, 20:30] = True
    assert torch.equal(straight_runs(mask, 11), mask)


def test_the_fine_score_marks_straight_runs_at_the_stroke_threshold_only() -> None:
    card = {"threshold": 0.45, "fine_threshold": 0.85, "stroke_threshold": 0.1, "stroke_length": 11}
    prob = torch.full((1, 1, 64, 64), 0.02)
    prob[0, 0, 40, 5:45] = 0.2  # a faint long stroke: marked by the run
    prob[0, 0, 10:14, 10:14] = 0.3  # a faint blob: not
    prob[0, 0, 55, 50] = 0.9  # a sure speck: marked by the fine cut itself
    hit = fine_score(prob, card) >= card["threshold"]
    assert hit[0, 0, 40, 5:45].all() and not hit[0, 0, 10:14, 10:14].any() and hit[0, 0, 55, 50]
    assert hit.sum() == 41
    plain = {k: v for k, v in card.items() if not k.startswith("stroke")}
    assert torch.equal(fine_score(prob, plain) >= 0.45, prob >= 0.85)  # without the stroke keys, the fine cut alone


def test_the_runs_are_the_opening_a_convolution_computes() -> None:
    # Reference: erosion where a segment's kernel counts all its pixels marked, dilation by the
    # flipped kernel, on the mask grown by a pixel, then cut back to the mask.
    from torch.nn import functional as F

    from oldphoto.pipeline import dilate

    generator = torch.Generator().manual_seed(0)
    for length, share in ((11, 0.5), (17, 0.7), (5, 0.3)):
        hit = torch.rand(2, 1, 40, 57, generator=generator) < share
        kernels = segment_kernels(length, 16)
        grown = dilate(hit.float(), 1)
        eroded = (F.conv2d(grown, kernels, padding=length // 2) >= length - 0.5).float()
        opened = (F.conv2d(eroded, kernels.flip(2, 3), padding=length // 2, groups=16) > 0.5).any(1, keepdim=True) & hit
        assert torch.equal(straight_runs(hit, length), opened), length
