"""The face stage: parity with the published code (tests/data/parity/face) and the stage's contract.

The generator is imported through the real path: a published-format ``.pth`` (with the
spectral-norm ``weight_orig``/``weight_u``/``weight_v`` triplets) built from the manifest's
weight rule, converted by ``import_official`` with the ``face256``/``face512`` cards, loaded
from our safetensors. Tolerances are those of tests/data/parity/README.md.
"""

from __future__ import annotations

import builtins
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from oldphoto.errors import UsageError, WeightsError
from oldphoto.faces import FacesUnavailable, enhance_faces, faces_available
from oldphoto.faces.align import align_face, face_template, similarity_transform, to_uint8, warp_affine
from oldphoto.faces.blend import Canvas, face_window, match_histograms, paste_face, soften_mask
from oldphoto.faces.detect import default_detector, detect_faces
from oldphoto.weights.cards import load_card
from oldphoto.weights.checkpoint import load_checkpoint
from oldphoto.weights.importer import fold_spectral_norm, import_official
from oldphoto.weights.load import load_bundle
from tests.support.weight_rule import build_state_dict, save_pth

DATA = Path(__file__).resolve().parent / "data"
FACE = DATA / "parity" / "face"
PHOTOS = DATA / "photos"
TOL = 1e-4
SOURCES = {
    "face256": "Face_Enhancement/checkpoints/Setting_9_epoch_100/latest_net_G.pth",
    "face512": "Face_Enhancement/checkpoints/FaceSR_512/latest_net_G.pth",
}

needs_dlib = pytest.mark.skipif(
    not faces_available(), reason="the faces extra (dlib-bin, face-recognition-models) is not installed"
)

#: dlib 20's detections on the repository's photos: box (left, top, right, bottom) and five points.
EXPECTED_FACES = {
    "photos/old_a.png": [((74, 114, 254, 293), ((126, 174), (191, 173), (175, 211), (130, 240), (192, 240)))],
    "photos/scratched_b.png": [((83, 74, 170, 160), ((106, 102), (145, 100), (127, 124), (111, 144), (143, 143)))],
    "photos/scratched_c.png": [((101, 141, 173, 213), ((118, 162), (151, 159), (136, 181), (124, 194), (153, 192)))],
    "parity/scratch_input.png": [((85, 109, 157, 181), ((102, 130), (135, 127), (120, 149), (108, 162), (137, 160)))],
    "parity/quality_input.png": [],
    "parity/hr_input.png": [],
}


def _manifest() -> dict:
    return json.loads((FACE / "face_manifest.json").read_text())


def _png(name: str) -> np.ndarray:
    return np.asarray(Image.open(FACE / name))


def _published_state() -> dict[str, torch.Tensor]:
    return build_state_dict(_manifest()["generator"], dict(np.load(FACE / "face_fixed.npz")))


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both face checkpoints, written in the published layout and imported into our format."""
    root = tmp_path_factory.mktemp("face_published")
    save_pth(_published_state(), root / SOURCES["face256"])
    # The parity data uses one set of weights for both sizes; a link saves writing 350 MB twice.
    (root / SOURCES["face512"]).parent.mkdir(parents=True)
    os.symlink(root / SOURCES["face256"], root / SOURCES["face512"])
    dest = tmp_path_factory.mktemp("face_ours")
    report = import_official(root, dest, models=list(SOURCES), strict=True)
    assert sorted(report.imported) == sorted(SOURCES) and not report.warnings
    return dest


def _generator(folder: Path, name: str) -> torch.nn.Module:
    _, bundle = load_bundle(folder, name)
    return bundle["generator"].eval()


@pytest.fixture(scope="module")
def generator256(imported: Path) -> torch.nn.Module:
    return _generator(imported, "face256")


def _gen_input(face: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(face.transpose(2, 0, 1))).float()[None]
    return (x / 255.0 - 0.5) / 0.5


# ---- import: spectral norm folded, strict keys, cards ----------------------------------------


def test_import_folds_spectral_norm_and_records_sources(imported: Path) -> None:
    meta, tensors = load_checkpoint(imported, "face256")
    card_config = load_card("face256")["networks"]["generator"]["config"]
    assert meta["networks"]["generator"] == {"arch": "spade_face_generator", "config": card_config}
    assert meta["networks"]["generator"]["config"]["size"] == 256
    assert meta["sources"][0]["file"] == SOURCES["face256"] and len(meta["sources"][0]["sha256"]) == 64
    assert not [k for k in tensors if k.endswith(("weight_orig", "weight_u", "weight_v"))]
    state = _published_state()
    for stem in ("head_0.conv_0", "up_0.conv_s", "up_3.conv_1"):
        w, u, v = (state[f"{stem}.{s}"].double() for s in ("weight_orig", "weight_u", "weight_v"))
        sigma = u @ (w.reshape(w.shape[0], -1) @ v)
        folded = tensors[f"generator.{stem}.weight"].double()
        assert torch.allclose(folded, w / sigma, rtol=1e-6, atol=0), stem
    assert load_checkpoint(imported, "face512")[0]["networks"]["generator"]["config"]["size"] == 512


def test_fold_matches_torch_spectral_norm_in_eval() -> None:
    torch.manual_seed(0)
    conv = torch.nn.utils.spectral_norm(torch.nn.Conv2d(5, 7, 3))
    conv.train()
    conv(torch.randn(1, 5, 8, 8))  # one power iteration, so u and v are not the initial ones
    conv.eval()
    x = torch.randn(1, 5, 8, 8)
    with torch.no_grad():
        expected = conv(x)
        folded = fold_spectral_norm({f"c.{k}": v for k, v in conv.state_dict().items()})
        plain = torch.nn.Conv2d(5, 7, 3)
        plain.load_state_dict({k[2:]: v for k, v in folded.items()})
        assert (plain(x) - expected).abs().max() <= 1e-6


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s.pop("c.weight_v"), "incomplete spectral-norm entries, missing c.weight_v"),
        (lambda s: s.__setitem__("c.weight_u", torch.ones(3)), "spectral-norm shapes do not fit at c"),
        (lambda s: s.__setitem__("c.weight", torch.ones(7, 5, 3, 3)), "both plain and spectral-norm weights for c"),
        (lambda s: s.__setitem__("c.weight_u", torch.zeros(7)), "spectral norm of c is 0.0"),
    ],
)
def test_fold_refuses_broken_triplets(edit, message: str) -> None:
    state = {
        "c.weight_orig": torch.ones(7, 5, 3, 3),
        "c.weight_u": torch.ones(7),
        "c.weight_v": torch.ones(45),
        "c.bias": torch.ones(7),
    }
    edit(state)
    with pytest.raises(WeightsError, match=message.replace(".", r"\.")) as info:
        fold_spectral_norm(state, source="x.pth")
    assert str(info.value).startswith("x.pth: ") and "\n" not in str(info.value)


def test_import_names_a_missing_generator_key(tmp_path: Path) -> None:
    state = _published_state()
    del state["up_2.norm_s.mlp_beta.weight"]
    save_pth(state, tmp_path / "src" / SOURCES["face256"])
    with pytest.raises(WeightsError, match=r"missing keys: up_2\.norm_s\.mlp_beta\.weight"):
        import_official(tmp_path / "src", tmp_path / "dest", models=["face256"])
    assert not (tmp_path / "dest").exists() or not any((tmp_path / "dest").iterdir())


# ---- generator parity --------------------------------------------------------------------------


def test_generator_input_and_output_match_published(generator256: torch.nn.Module) -> None:
    x = _gen_input(_png("face_aligned_1.png"))
    assert np.array_equal(x.numpy(), np.load(FACE / "face_gen_input_1.npy"))
    with torch.inference_mode():
        y = generator256(x)
    diff = np.abs(y.numpy() - np.load(FACE / "face_gen_output_1.npy")).max()
    assert diff <= TOL, f"generator output: max abs diff {diff:.3g}"


def test_generator_512_centre_matches_published(imported: Path) -> None:
    generator = _generator(imported, "face512")
    face = np.asarray(Image.open(FACE / "face_aligned_1.png").resize((512, 512), Image.BICUBIC))
    with torch.inference_mode():
        y = generator(_gen_input(face))
    assert y.shape == (1, 3, 512, 512)
    diff = np.abs(y[..., 128:384, 128:384].numpy() - np.load(FACE / "face_gen512_output_center.npy")).max()
    assert diff <= TOL, f"512 generator centre: max abs diff {diff:.3g}"


# ---- detection, landmarks, alignment ------------------------------------------------------------


@needs_dlib
def test_detection_and_landmarks_exact_on_parity_photo() -> None:
    expected = _manifest()["faces"]
    faces = detect_faces(_png("face_input.png"))
    assert len(faces) == len(expected) == 1
    for face, ref in zip(faces, expected):
        assert list(face.box) == ref["box_ltrb"]
        assert [list(p) for p in face.landmarks] == ref["landmarks68"]
        assert [list(p) for p in face.five_points] == ref["five_points"]


@needs_dlib
@pytest.mark.parametrize("name", sorted(EXPECTED_FACES))
def test_detection_boxes_on_photos(name: str) -> None:
    rgb = np.asarray(Image.open(DATA / name).convert("RGB"))
    assert [(f.box, f.five_points) for f in detect_faces(rgb)] == EXPECTED_FACES[name]


def test_alignment_matches_published() -> None:
    ref = _manifest()["faces"][0]
    matrix = similarity_transform(face_template(256), np.array(ref["five_points"]))
    assert np.abs(matrix - np.array(ref["affine_aligned_to_photo"])).max() <= 1e-9
    aligned = to_uint8(align_face(_png("face_input.png"), matrix, 256))
    diff = np.abs(aligned.astype(int) - _png("face_aligned_1.png"))
    assert diff.max() <= 1, f"aligned face: {diff.max()} levels off"


def test_histogram_matching_exact_given_restored_face() -> None:
    ref = _manifest()["faces"][0]
    matrix = similarity_transform(face_template(256), np.array(ref["five_points"]))
    original = align_face(_png("face_input.png"), matrix, 256).astype(np.uint8)
    matched = match_histograms(_png("face_restored_1.png"), original)
    assert np.array_equal(matched, _png("face_matched_1.png"))


# ---- the whole stage ------------------------------------------------------------------------------


def _level_check(out: Image.Image, expected: np.ndarray) -> tuple[int, float]:
    diff = np.abs(np.asarray(out).astype(int) - expected.astype(int))
    return int(diff.max()), float((diff <= 2).mean())


@needs_dlib
def test_final_photo_matches_published(generator256: torch.nn.Module, tmp_path: Path) -> None:
    image = Image.open(FACE / "face_input.png")
    out, records = enhance_faces(image, generator256, save_dir=tmp_path, save_prefix="h")
    worst, within = _level_check(out, _png("face_expected.png"))
    assert within >= 0.999, f"final photo: {100 * (1 - within):.3f}% of values more than 2 levels off (max {worst})"
    assert out.size == image.size and out.mode == "RGB"
    assert [(r.index, list(r.box), r.enhanced, r.size) for r in records] == [(1, [161, 128, 311, 277], True, 256)]
    record = records[0].as_json()
    assert record["five_points"] == _manifest()["faces"][0]["five_points"]
    json.dumps(record)
    saved = {k: np.asarray(Image.open(v)) for k, v in records[0].files.items()}
    assert sorted(saved) == ["aligned", "compare", "restored"]
    assert np.abs(saved["aligned"].astype(int) - _png("face_aligned_1.png")).max() <= 1
    assert np.abs(saved["restored"].astype(int) - _png("face_restored_1.png")).max() <= 1
    assert saved["compare"].shape == (256, 512, 3)
    assert np.array_equal(saved["compare"][:, :256], saved["aligned"])


@needs_dlib
def test_strength_scales_the_blend(generator256: torch.nn.Module) -> None:
    image = Image.open(FACE / "face_input.png")
    untouched, records = enhance_faces(image, generator256, strength=0.0)
    assert np.array_equal(np.asarray(untouched), np.asarray(image))
    assert [(list(r.box), r.enhanced) for r in records] == [([161, 128, 311, 277], False)]
    # The blend is linear in the strength: half strength is the mean of none and full.
    full = np.asarray(enhance_faces(image, generator256)[0]).astype(float)
    half = np.asarray(enhance_faces(image, generator256, strength=0.5)[0]).astype(float)
    assert np.abs(half - (full + np.asarray(image)) / 2).max() <= 1.0
    assert (half != np.asarray(image)).sum() > 10_000


@needs_dlib
@pytest.mark.parametrize("name", ["parity/quality_input.png", "parity/hr_input.png"])
def test_photo_without_faces_is_unchanged(name: str, tmp_path: Path) -> None:
    image = Image.open(DATA / name)
    out, records = enhance_faces(image, None, strength=0.0)
    assert records == []
    sentinel = torch.nn.Module()  # would fail if run: a photo without faces never reaches the generator
    sentinel.size = 256
    out, records = enhance_faces(image, sentinel, save_dir=tmp_path)
    assert records == [] and out.mode == image.mode and out.tobytes() == image.tobytes()
    assert not any(tmp_path.iterdir())


def test_bad_arguments_raise_usage_errors(generator256: torch.nn.Module) -> None:
    image = Image.new("RGB", (64, 64))
    with pytest.raises(UsageError, match="between 0 and 1"):
        enhance_faces(image, generator256, strength=1.5)
    with pytest.raises(UsageError, match="face size 512 does not match the face generator, which is built for 256"):
        enhance_faces(image, generator256, size=512)
    with pytest.raises(UsageError, match="needs a face generator"):
        enhance_faces(image, None)


# ---- blending on windows equals blending on the whole photo ---------------------------------------


def _whole_photo_paste(photo: np.ndarray, face: np.ndarray, to_photo: np.ndarray) -> np.ndarray:
    """The published order of work on the whole photo, as the reference for the windowed one."""
    to_face = np.linalg.inv(to_photo)
    shape = photo.shape[:2]
    size = face.shape[0]
    forward = warp_affine(np.ones((*shape, 1)), to_photo, (size, size), order=0)
    mask = warp_affine(forward, to_face, shape, order=0)[..., 0]
    warped = warp_affine(face, to_face, shape, order=3)
    m = soften_mask(mask)[..., None]
    return np.clip((warped * m + photo * (1 - m)) / 255.0, 0.0, 1.0) * 255.0


@pytest.mark.parametrize("crop", [(0, 0, 372, 524), (200, 0, 372, 524), (0, 150, 330, 270)])
def test_windowed_paste_equals_whole_photo(crop: tuple[int, int, int, int]) -> None:
    """Also with the face cut by the photo's edge, where erosion and blur meet the border."""
    left, top, right, bottom = crop
    photo = _png("face_input.png")[top:bottom, left:right]
    ref = _manifest()["faces"][0]
    points = np.array(ref["five_points"]) - [left, top]
    to_photo = similarity_transform(face_template(256), points)
    face = _png("face_matched_1.png").astype(np.float64)
    canvas = Canvas(photo)
    window = face_window(np.linalg.inv(to_photo), 256, photo.shape[:2])
    assert window is not None
    to_face = np.linalg.inv(to_photo)
    canvas.write(window, paste_face(canvas.read(window), window, face, to_photo, to_face, photo.shape[:2]))
    expected = to_uint8(_whole_photo_paste(photo.astype(np.float64), face, to_photo))
    assert np.array_equal(canvas.finish(), expected)


def test_canvas_reads_later_patches_over_earlier_ones() -> None:
    canvas = Canvas(np.zeros((6, 6, 3), np.uint8))
    canvas.write((slice(0, 4), slice(0, 4)), np.full((4, 4, 3), 10.4))
    canvas.write((slice(2, 6), slice(2, 6)), np.full((4, 4, 3), 20.5))
    region = canvas.read((slice(1, 5), slice(1, 5)))[..., 0]
    assert region[0, 0] == 10.4 and region[3, 3] == 20.5 and region[1, 1] == 20.5
    out = canvas.finish()[..., 0]
    assert out[0, 0] == 10 and out[5, 5] == 20 and out[2, 2] == 20 and out[0, 5] == 0


def test_soften_mask_never_erodes_from_the_photo_border() -> None:
    assert np.allclose(soften_mask(np.ones((40, 50))), 1.0)
    square = np.zeros((80, 80))
    square[10:70, 10:70] = 1.0
    soft = soften_mask(square)
    assert soft[40, 40] == pytest.approx(1.0) and soft[5, 5] == 0.0 and 0.0 < soft[30, 40] < 1.0


# ---- without the extra ------------------------------------------------------------------------------


@pytest.fixture()
def no_dlib(monkeypatch: pytest.MonkeyPatch):
    """Hide dlib as if the extra were not installed (and forget any loaded detector)."""
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "dlib" or name.startswith("dlib."):
            raise ImportError("No module named 'dlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setitem(sys.modules, "dlib", None)
    monkeypatch.setattr(builtins, "__import__", fake_import)
    default_detector.cache_clear()
    yield
    default_detector.cache_clear()


def test_without_dlib_the_stage_says_what_to_install(no_dlib: None) -> None:
    assert not faces_available()
    with pytest.raises(FacesUnavailable) as info:
        enhance_faces(Image.new("RGB", (32, 32)), None, strength=0.0)
    message = str(info.value)
    assert "\n" not in message and "dlib" in message
    assert "pip install '.[faces]' in oldphoto's folder" in message and "dlib-bin" in message and "face-recognition-models" in message


def test_without_the_landmark_model_the_stage_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    def find_spec(name: str, *args):
        return None if name == "face_recognition_models" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    from oldphoto.faces import landmark_model_path

    pattern = r"68_face_landmarks\.dat .*face-recognition-models is not installed.*pip install '\.\[faces\]' in oldphoto's folder"
    with pytest.raises(FacesUnavailable, match=pattern):
        landmark_model_path()


@needs_dlib
def test_a_16_bit_photo_gets_the_same_faces_blended_in_16_bits(generator256: torch.nn.Module) -> None:
    """Faces are found and generated on the 8-bit rendering and blended into the 16-bit samples:
    where the face is pasted the result is the 8-bit stage's float blend at 16 bits, elsewhere the photo's own samples."""
    image = np.asarray(Image.open(FACE / "face_input.png").convert("RGB"))
    deep = (image.astype(np.uint16) * 257 + np.where(image < 255, 128, 0)).astype(np.uint16)  # renders to the same 8 bits
    out8, records8 = enhance_faces(image, generator256)
    out16, records16 = enhance_faces(deep, generator256)
    assert out16.dtype == np.uint16 and [r.box for r in records16] == [r.box for r in records8]
    changed = np.any(out8 != image, axis=2)
    assert changed.sum() > 10_000 and np.any(out16 != deep, axis=2).sum() >= changed.sum()
    # Everywhere, the 16-bit result is the 8-bit one to the 8-bit rounding (half a level) plus the
    # 0.498 level the 16-bit samples sit above it.
    assert np.abs(out16 / 257.0 - out8).max() <= 1.01
    assert np.array_equal(out16[:40], deep[:40])  # far above the face, untouched
