"""Synthetic degradations: seeded, deterministic, published ranges, exact damage masks, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from oldphoto.cli import app
from oldphoto.training import degrade as d
from oldphoto.training.data import Sampler, random_crop



@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    rng = np.random.default_rng(7)
    # A smooth gradient with texture, so every operation visibly changes it.
    y, x = np.mgrid[0:96, 0:128]
    base = np.stack([x * 2, y * 2, (x + y)], axis=2).astype(np.float64)
    return np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)


def _run(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "400"})


def test_same_seed_same_bytes_different_seeds_differ(photo: np.ndarray) -> None:
    a = d.degrade_photo(photo, 3, damage=d.Damage())
    b = d.degrade_photo(photo, 3, damage=d.Damage())
    assert a[0].tobytes() == b[0].tobytes() and a[1].tobytes() == b[1].tobytes() and a[2] == b[2]
    others = [d.degrade_photo(photo, s, damage=d.Damage()) for s in range(4, 10)]
    assert all(o[0].tobytes() != a[0].tobytes() for o in others)
    assert all(o[1].tobytes() != a[1].tobytes() for o in others)


def test_recipe_draws_published_ranges(photo: np.ndarray) -> None:
    seen: dict[str, int] = {}
    small = photo[:32, :32]
    for seed in range(300):
        _, _, ops = d.degrade_photo(small, seed)
        for op in ops:
            seen[op["op"]] = seen.get(op["op"], 0) + 1
            if op["op"] == "blur":
                assert op["size"] in (3, 5, 7) and 1 <= op["sigma"] <= 5
            elif op["op"] in ("gaussian", "speckle"):
                assert 5 / 255 <= op["sigma"] <= 50 / 255
            elif op["op"] == "salt_pepper":
                assert 0 <= op["amount"] <= 0.01 and 0.3 <= op["salt"] <= 0.8
            elif op["op"] == "resample":
                assert 16 <= op["size"][0] <= 32 and 16 <= op["size"][1] <= 32
            elif op["op"] == "jpeg":
                assert 40 <= op["quality"] <= 100
    # Each family with probability 0.7 (300 draws: 210 ± ~25), grey 0.1, no fading by default.
    assert all(170 < seen[k] < 250 for k in ("blur", "resample", "jpeg"))
    assert 170 < seen["gaussian"] + seen["speckle"] + seen["salt_pepper"] < 250
    assert 12 < seen.get("grey", 0) < 50 and "fade" not in seen


def test_p_each_sets_how_often_each_family_applies(photo: np.ndarray) -> None:
    """``--p-each`` (lite's fine-tune uses 0.4): 0 leaves the photo as it is, 0.4 applies each family ~40 %."""
    small = photo[:32, :32]
    none = d.Recipe(p_each=0.0)
    for seed in range(20):
        out, ops = d.degrade(small, np.random.default_rng(seed), none)
        assert ops == [] and np.array_equal(out, small)
    light = d.Recipe(p_each=0.4)
    counts = [len(d.degrade(small, np.random.default_rng(seed), light)[1]) for seed in range(300)]
    assert 0.3 < sum(counts) / (4 * 300) < 0.5  # 0.4 of 1200 family draws
    assert 20 < counts.count(0) < 60  # 0.6^4 = 13 % of 300 left undegraded


def test_p_clean_keeps_that_share_nearly_clean(photo: np.ndarray) -> None:
    """``--p-clean 0.3``: ~30 % of inputs get at most a JPEG at quality 85–100; 0 draws exactly as before."""
    small = photo[:32, :32]
    base, clean = d.Recipe(p_each=1.0), d.Recipe(p_each=1.0, p_clean=0.3)
    light = 0
    for seed in range(300):
        out, ops = d.degrade(small, np.random.default_rng(seed), clean)
        if len(ops) <= 1:
            light += 1
            assert all(op["op"] == "jpeg" and 85 <= op["quality"] <= 100 for op in ops)
            assert np.abs(out.astype(int) - small.astype(int)).mean() < 8
        else:
            assert len(ops) == 4
    assert 60 < light < 120  # 0.3 of 300
    for seed in range(5):  # p_clean 0 takes no draw: the published recipe's bytes are unchanged
        assert np.array_equal(d.degrade(small, np.random.default_rng(seed), base)[0],
                              d.degrade(small, np.random.default_rng(seed), d.Recipe(p_each=1.0, p_clean=0.0))[0])


def test_p_noise_gives_that_share_gaussian_noise_alone(photo: np.ndarray) -> None:
    """``--p-noise 0.25``: ~25 % of inputs get Gaussian noise of σ 5–50 and nothing else; 0 draws as before."""
    small = photo[:32, :32]
    noisy = d.Recipe(p_each=1.0, p_noise=0.25)
    alone = 0
    for seed in range(300):
        out, ops = d.degrade(small, np.random.default_rng(seed), noisy)
        if len(ops) == 1:
            alone += 1
            assert ops[0]["op"] == "gaussian" and 5 / 255 <= ops[0]["sigma"] <= 50 / 255
            residual = out.astype(float) - small.astype(float)
            assert 0.5 * 255 * ops[0]["sigma"] < residual.std() < 1.2 * 255 * ops[0]["sigma"]  # clipping trims it
        else:
            assert len(ops) == 4
    assert 50 < alone < 100  # 0.25 of 300
    for seed in range(5):
        assert np.array_equal(d.degrade(small, np.random.default_rng(seed), d.Recipe(p_each=1.0))[0],
                              d.degrade(small, np.random.default_rng(seed), d.Recipe(p_each=1.0, p_noise=0.0))[0])


def test_mask_marks_exactly_the_damaged_pixels(photo: np.ndarray) -> None:
    for seed in range(5):
        clean = d.degrade_photo(photo, seed)[0]  # the same draws up to the damage
        damaged, mask, _ = d.degrade_photo(photo, seed, damage=d.Damage())
        changed = np.any(damaged != clean, axis=2)
        assert set(np.unique(mask)) <= {0, 255} and mask.any()
        assert np.array_equal(changed, mask > 0)


def test_each_damage_kind_alone(photo: np.ndarray) -> None:
    for kind in d.DAMAGE_KINDS:
        out, mask = d.add_damage(photo, np.random.default_rng(1), d.Damage(kinds=(kind,)))
        assert 0 < (mask > 0).mean() < 0.5, kind
        assert np.array_equal(np.any(out != photo, axis=2), mask > 0)


def test_blur_matches_a_direct_convolution() -> None:
    img = np.random.default_rng(0).integers(0, 256, (9, 11, 3), dtype=np.uint8)
    k = d.gaussian_kernel(5, 1.5)
    padded = np.pad(img.astype(float), ((2, 2), (2, 2), (0, 0)), mode="reflect")
    ref = np.zeros(img.shape)
    for i in range(5):
        for j in range(5):
            ref += k[i] * k[j] * padded[i : i + 9, j : j + 11]
    assert np.abs(d.gaussian_blur(img, 5, 1.5).astype(int) - np.rint(ref)).max() <= 1


def test_cli_writes_photo_and_mask_reproducibly(tmp_path: Path, photo: np.ndarray) -> None:
    src = tmp_path / "clean.png"
    Image.fromarray(photo).save(src)
    for name in ("a", "b"):
        r = _run("degrade", str(src), str(tmp_path / f"{name}.png"), "--seed", "5", "--scratches")
        assert r.exit_code == 0, r.output
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert (tmp_path / "a_mask.png").read_bytes() == (tmp_path / "b_mask.png").read_bytes()
    out = np.asarray(Image.open(tmp_path / "a.png"))
    mask = np.asarray(Image.open(tmp_path / "a_mask.png"))
    assert out.shape == photo.shape and mask.shape == photo.shape[:2] and mask.any()
    r = _run("degrade", str(src), str(tmp_path / "c.png"), "--seed", "6", "--scratches", "--mask-out", str(tmp_path / "m" / "c.png"))
    assert r.exit_code == 0 and (tmp_path / "m" / "c.png").is_file()
    assert (tmp_path / "c.png").read_bytes() != (tmp_path / "a.png").read_bytes()


def test_cli_folder_with_json_records(tmp_path: Path, photo: np.ndarray) -> None:
    (tmp_path / "in" / "sub").mkdir(parents=True)
    Image.fromarray(photo).save(tmp_path / "in" / "one.png")
    Image.fromarray(photo[:, :, 0]).save(tmp_path / "in" / "sub" / "two.png")
    r = _run("degrade", str(tmp_path / "in"), str(tmp_path / "out"), "--seed", "1", "--json")
    assert r.exit_code == 0, r.output
    records = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(records) == 2 and records[0]["seed"] != records[1]["seed"]
    assert Image.open(tmp_path / "out" / "sub" / "two.png").mode == "L"  # grey stays grey
    assert not (tmp_path / "out" / "one_mask.png").exists()  # no damage asked, no mask


@pytest.mark.parametrize("case", ["missing", "corrupt", "kind", "same"])
def test_cli_errors_are_one_line(tmp_path: Path, case: str) -> None:
    src = tmp_path / "x.png"
    if case == "corrupt":
        src.write_bytes(b"not an image")
    elif case != "missing":
        Image.new("RGB", (16, 16)).save(src)
    dest = src if case == "same" else tmp_path / "y.png"
    extra = ["--kind", "mould"] if case == "kind" else []
    r = _run("degrade", str(src), str(dest), *extra)
    assert r.exit_code != 0
    assert len(r.output.strip().splitlines()) == 1 and r.output.startswith("error:"), r.output


def test_zoom_cuts_softer_crops_of_the_same_size(photo: np.ndarray) -> None:
    """``zoom`` (the mapping stages' soft clean targets) keeps the crop size, and off it draws as before."""
    plain = [random_crop(photo, 32, np.random.default_rng(s)) for s in range(20)]
    assert all(random_crop(photo, 32, np.random.default_rng(s), zoom=1.0).tobytes() == p.tobytes() for s, p in enumerate(plain))
    zoomed = [random_crop(photo, 32, np.random.default_rng(s), zoom=2.0) for s in range(20)]
    assert all(z.shape == (32, 32, 3) and z.dtype == np.uint8 for z in zoomed)

    def detail(crops: list[np.ndarray]) -> float:
        return float(np.mean([np.abs(np.diff(c.astype(np.float64), axis=1)).mean() for c in crops]))

    # Enlarged by 1.5 on average, the texture's pixel-to-pixel steps shrink (0.53 of the plain crops' here).
    assert detail(zoomed) < 0.75 * detail(plain)


def test_clean_zoom_softens_only_the_pairs_kept_clean_and_draws_as_before_at_one(photo: np.ndarray) -> None:
    """``clean_zoom``: the pairs ``degrade`` keeps nearly clean come from softer crops; at 1 nothing changes."""

    def pairs(p_clean: float, **zoom: float):
        recipe = d.Recipe(p_each=1.0, p_clean=p_clean)
        return Sampler([photo], crop=32, recipe=recipe, rng=np.random.default_rng(5), **zoom).pairs(40)

    def detail(y) -> float:
        return float((y[..., 1:] - y[..., :-1]).abs().mean())

    plain, one = pairs(0.5), pairs(0.5, clean_zoom=1.0)
    assert np.array_equal(plain.x.numpy(), one.x.numpy()) and np.array_equal(plain.y.numpy(), one.y.numpy())
    # Every pair kept clean: the targets lose pixel-to-pixel detail (0.56 of the plain crops' here); none kept
    # clean: the crops stay as crisp as without the option (the same detail, other crops).
    crisp = detail(pairs(1.0).y)
    assert detail(pairs(1.0, clean_zoom=2.0).y) < 0.75 * crisp
    assert abs(detail(pairs(0.0, clean_zoom=2.0).y) - crisp) < 0.1 * crisp
    recipe = d.Recipe(p_each=1.0, p_clean=0.5)
    ops = [d.degrade(photo[:16, :16], np.random.default_rng(s), recipe)[1] for s in range(200)]
    # Kept clean: a light JPEG at most; otherwise all four families (p_each 1).
    assert [d.stays_clean(s, recipe) for s in range(200)] == [len(o) <= 1 for o in ops]
    assert 70 <= sum(len(o) <= 1 for o in ops) <= 130
