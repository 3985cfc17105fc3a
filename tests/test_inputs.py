"""One normalisation of photos and masks: every form of the same picture restores to the same bytes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from oldphoto import Restorer
from oldphoto.cli import app
from oldphoto.errors import ImageError
from oldphoto.inputs import GREY_MODES, fit_mask, load_mask, load_photo

PHOTO_SIZE = (64, 48)
MASK_SIZE = (40, 30)  # another size than the photo's, so the one resize is part of every path


def _anti_aliased_mask() -> np.ndarray:
    """A thick diagonal stroke drawn at 4× and box-filtered down: grey levels all along its edges."""
    big = Image.new("L", (MASK_SIZE[0] * 4, MASK_SIZE[1] * 4), 0)
    ImageDraw.Draw(big).line((10, 5, big.width - 30, big.height - 8), fill=255, width=19)
    ImageDraw.Draw(big).ellipse((100, 10, 140, 50), fill=255)
    a = np.asarray(big.resize(MASK_SIZE, Image.Resampling.BOX))
    assert len(np.unique(a)) > 10 and ((a > 0) & (a < 255)).sum() > 40  # truly anti-aliased
    return a


AA = _anti_aliased_mask()


def _palette(a: np.ndarray) -> Image.Image:
    image = Image.frombytes("P", (a.shape[1], a.shape[0]), a.tobytes())
    image.putpalette([v for i in range(256) for v in (i, i, i)])
    return image


def _white_on_transparent(a: np.ndarray) -> Image.Image:
    """Strokes painted white on a transparent layer: the mask is in the alpha channel."""
    white = np.full_like(a, 255)
    return Image.fromarray(np.stack([white, white, white, a], axis=-1), mode="RGBA")


#: The same mask as files of every kind a user might draw or save.
FILE_FORMS: dict[str, Any] = {
    "grey.png": lambda: Image.fromarray(AA, mode="L"),
    "rgb.png": lambda: Image.fromarray(np.stack([AA] * 3, axis=-1), mode="RGB"),
    "rgba-layer.png": lambda: _white_on_transparent(AA),
    "rgba-opaque.png": lambda: Image.fromarray(np.stack([AA, AA, AA, np.full_like(AA, 255)], axis=-1), mode="RGBA"),
    "one-bit.png": lambda: Image.fromarray(AA >= 128),
    "palette.png": lambda: _palette(AA),
    "palette.gif": lambda: _palette(AA),
    "deep.png": lambda: Image.fromarray(AA.astype(np.uint16) * 257),
    "grey.bmp": lambda: Image.fromarray(AA, mode="L"),
}
#: The same mask handed over in memory.
MEMORY_FORMS: dict[str, Any] = {
    "PIL L": lambda: Image.fromarray(AA, mode="L"),
    "PIL RGBA layer": lambda: _white_on_transparent(AA),
    "PIL 1-bit": lambda: Image.fromarray(AA >= 128),
    "PIL palette": lambda: _palette(AA),
    "PIL I;16": lambda: Image.fromarray(AA.astype(np.uint16) * 257),
    "bool": lambda: AA >= 128,
    "uint8": lambda: AA.copy(),
    "uint8 H×W×1": lambda: AA[..., None].copy(),
    "float": lambda: AA.astype(np.float64) / 255.0,
    "float32": lambda: AA.astype(np.float32) / np.float32(255.0),
    "uint16": lambda: AA.astype(np.uint16) * 257,
    "RGB uint8": lambda: np.stack([AA] * 3, axis=-1),
    "RGBA uint8 layer": lambda: np.asarray(_white_on_transparent(AA)),
}
EXPECTED_MASK = np.asarray(
    Image.fromarray(np.where(AA >= 128, 255, 0).astype(np.uint8)).resize(PHOTO_SIZE, Image.Resampling.NEAREST)
)


@pytest.fixture(scope="module")
def restorer(tiny_weights: Path) -> Restorer:
    return Restorer(tiny_weights, device="cpu", precision="fp32", faces=False)


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("photo") / "photo.png"
    rng = np.random.default_rng(7)
    Image.fromarray(rng.integers(0, 256, (PHOTO_SIZE[1], PHOTO_SIZE[0], 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def reference(restorer: Restorer, photo: Path) -> np.ndarray:
    result = restorer.restore_detailed(photo, Image.fromarray(EXPECTED_MASK, mode="L"))
    assert result.mode == "scratch"
    return np.asarray(result.image)


@pytest.mark.parametrize("name", sorted(FILE_FORMS))
def test_a_mask_file_restores_the_same_from_the_cli_and_the_api(
    name: str, restorer: Restorer, photo: Path, reference: np.ndarray, tmp_path: Path, tiny_weights: Path
) -> None:
    mask_file = tmp_path / name
    FILE_FORMS[name]().save(mask_file)
    assert np.array_equal(np.asarray(load_mask(mask_file, PHOTO_SIZE)), EXPECTED_MASK)
    out = tmp_path / "out.png"
    result = CliRunner().invoke(
        app,
        ["restore", str(photo), str(out), "--mask", str(mask_file), "--weights", str(tiny_weights), "--device", "cpu",
         "--precision", "fp32", "--no-faces"],
        env={"COLUMNS": "400"},
    )
    assert result.exit_code == 0, result.output
    assert "(scratch mode" in result.output
    with Image.open(out) as written:
        assert np.asarray(written).tobytes() == reference.tobytes()
    from_api = restorer.restore_detailed(photo, mask=mask_file)
    assert np.array_equal(np.asarray(from_api.mask), EXPECTED_MASK)
    assert np.asarray(from_api.image).tobytes() == reference.tobytes()


@pytest.mark.parametrize("name", sorted(MEMORY_FORMS))
def test_a_mask_in_memory_restores_the_same_as_the_file(name: str, restorer: Restorer, photo: Path, reference: np.ndarray) -> None:
    given = MEMORY_FORMS[name]()
    result = restorer.restore_detailed(Image.open(photo), mask=given)
    assert result.mode == "scratch"
    assert np.array_equal(np.asarray(result.mask), EXPECTED_MASK)
    assert np.asarray(result.image).tobytes() == reference.tobytes()


@pytest.mark.parametrize(
    ("values", "damaged"),
    [
        (np.array([[127, 128]], dtype=np.uint8), [0, 255]),
        (np.array([[32767, 32768]], dtype=np.uint16), [0, 255]),
        (np.array([[0.4999, 0.5]], dtype=np.float64), [0, 255]),
        (np.array([[False, True]]), [0, 255]),
    ],
)
def test_masks_are_damaged_from_half_up(values: np.ndarray, damaged: list[int]) -> None:
    mask = load_mask(values, (2, 1))
    assert mask.mode == "L" and np.asarray(mask)[0].tolist() == damaged


def test_transparent_mask_pixels_are_undamaged() -> None:
    """A white stroke at alpha 100 is not damage (composited onto black it is dark grey); at alpha 200 it is."""
    layer = Image.new("RGBA", (3, 1), (255, 255, 255, 0))
    layer.putpixel((1, 0), (255, 255, 255, 100))
    layer.putpixel((2, 0), (255, 255, 255, 200))
    assert np.asarray(load_mask(layer, (3, 1)))[0].tolist() == [0, 0, 255]


def test_fit_mask_is_nearest_and_a_no_op_at_size() -> None:
    mask = Image.fromarray(np.array([[0, 255]], dtype=np.uint8))
    assert fit_mask(mask, (2, 1)) is mask
    assert np.asarray(fit_mask(mask, (4, 2))).tolist() == [[0, 0, 255, 255]] * 2


@pytest.mark.parametrize("mode", sorted(GREY_MODES - {"I;16B", "I;16L", "I;16N"}))
def test_grey_photos_stay_grey_in_memory_and_from_files(mode: str, tmp_path: Path) -> None:
    pil = Image.new(mode, (8, 8), 1)
    assert load_photo(pil).image.mode == "L" and load_photo(pil).is_grey
    if mode != "F":  # PNG and TIFF cannot hold 32-bit float without extra plugins
        path = tmp_path / ("g.tif" if mode == "I" else "g.png")
        pil.save(path)
        assert load_photo(path).image.mode == "L"


def test_photo_forms_agree(tmp_path: Path) -> None:
    """An RGBA photo is composited onto white the same way from a file, a PIL image and an array."""
    rng = np.random.default_rng(3)
    rgba = rng.integers(0, 256, (12, 10, 4), dtype=np.uint8)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "p.png")
    from_file = load_photo(tmp_path / "p.png")
    from_pil = load_photo(Image.fromarray(rgba, mode="RGBA"))
    from_array = load_photo(rgba)
    assert from_file.image.mode == from_pil.image.mode == from_array.image.mode == "RGB"
    assert np.asarray(from_file.image).tobytes() == np.asarray(from_pil.image).tobytes() == np.asarray(from_array.image).tobytes()
    assert all("composited onto white" in p.warnings[0] for p in (from_file, from_pil, from_array))
    deep = np.arange(12 * 10, dtype=np.uint16).reshape(12, 10) * 500
    Image.fromarray(deep).save(tmp_path / "deep.png")
    assert np.array_equal(np.asarray(load_photo(deep).image), np.asarray(load_photo(tmp_path / "deep.png").image))


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (np.zeros((4, 4), dtype=np.int64), "unsupported array dtype int64"),
        (np.zeros((4, 4, 2), dtype=np.uint8), "is not an H×W, H×W×3 or H×W×4 image"),
        (3.5, "expected a path, a PIL image or a numpy array, got float"),
    ],
)
def test_unusable_inputs_are_one_line_errors(given: object, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        load_photo(given)  # type: ignore[arg-type]
    with pytest.raises(ImageError, match=message):
        load_mask(given, (4, 4))  # type: ignore[arg-type]
